//! The breaking-change check: does the current schema of an event still describe what
//! the consumers of its released version expect?
//!
//! Events outlive deployments: a consumer still running last week's code reads what a new
//! publisher writes, and a new consumer reads old events still on a topic or replayed from
//! the dead letters. So, within one version (`.v1`), an event may only grow optional
//! fields. Breaking, and reported here:
//! - the event type disappeared;
//! - a property disappeared (old consumers read it);
//! - a property changed its JSON type (old consumers cannot decode it);
//! - a property became required, or a new one is required (new consumers cannot decode
//!   old events that lack it).
//!
//! Nested objects (`items[].quantity`) are compared the same way. Annotations such as
//! `description` and `title` may change freely.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde_json::Value;

/// The report of `changes` for a person: what broke, and what to do instead.
pub fn report(changes: &[BreakingChange]) -> String {
    let events: BTreeSet<&str> = changes.iter().map(|c| c.event_type.as_str()).collect();
    let next: Vec<String> = events
        .iter()
        .map(|event_type| format!("`{}`", next_version(event_type)))
        .collect();
    let listed: Vec<String> = changes
        .iter()
        .map(|change| format!("  - {change}"))
        .collect();
    format!(
        "the event contract changed incompatibly since its release:\n{}\n\
         A breaking change needs a new version: publish the changed event as a new type ({}) \
         alongside the old one until every consumer has moved, then retire the old one. \
         Adding an optional field (an `Option` with `#[serde(default)]`) is not breaking. \
         See docs/events.md, \"Versioning\".",
        listed.join("\n"),
        next.join(", ")
    )
}

/// `shop.order.placed.v1` → `shop.order.placed.v2`; a type without a version gets `.v2`.
pub fn next_version(event_type: &str) -> String {
    event_type
        .rsplit_once(".v")
        .and_then(|(name, version)| Some((name, version.parse::<u32>().ok()?)))
        .map_or_else(
            || format!("{event_type}.v2"),
            |(name, version)| format!("{name}.v{}", version + 1),
        )
}

/// One incompatibility between a released schema and the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakingChange {
    pub event_type: String,
    /// The property, as a path (`items[].quantity`); empty for the payload itself.
    pub property: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The released event type has no current schema.
    EventRemoved,
    PropertyRemoved,
    TypeChanged {
        from: String,
        to: String,
    },
    /// The property was optional and is now required.
    BecameRequired,
    /// The property is new and required.
    AddedRequired,
}

impl fmt::Display for BreakingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event = &self.event_type;
        let property = if self.property.is_empty() {
            "the payload".to_owned()
        } else {
            format!("property `{}`", self.property)
        };
        match &self.change {
            Change::EventRemoved => write!(f, "{event}: the event type was removed"),
            Change::PropertyRemoved => write!(f, "{event}: {property} was removed"),
            Change::TypeChanged { from, to } => {
                write!(f, "{event}: {property} changed type from {from} to {to}")
            }
            Change::BecameRequired => {
                write!(f, "{event}: {property} was optional and is now required")
            }
            Change::AddedRequired => write!(f, "{event}: {property} was added as required"),
        }
    }
}

/// The breaking changes from the `released` schemas to the `current` ones, both by event
/// type. Event types that are only in `current` are new, which is fine.
pub fn breaking_changes<K: AsRef<str> + Ord, L: AsRef<str> + Ord>(
    released: &BTreeMap<K, Value>,
    current: &BTreeMap<L, Value>,
) -> Vec<BreakingChange> {
    let current: BTreeMap<&str, &Value> = current.iter().map(|(k, v)| (k.as_ref(), v)).collect();
    released
        .iter()
        .flat_map(|(event_type, released)| {
            let event_type = event_type.as_ref();
            match current.get(event_type) {
                Some(current) => compare(event_type, released, current),
                None => vec![BreakingChange {
                    event_type: event_type.to_owned(),
                    property: String::new(),
                    change: Change::EventRemoved,
                }],
            }
        })
        .collect()
}

/// The breaking changes from one `released` schema of `event_type` to its `current` one.
pub fn compare(event_type: &str, released: &Value, current: &Value) -> Vec<BreakingChange> {
    let mut comparison = Comparison {
        event_type,
        changes: Vec::new(),
    };
    comparison.schema("", released, current);
    comparison.changes
}

struct Comparison<'a> {
    event_type: &'a str,
    changes: Vec<BreakingChange>,
}

impl Comparison<'_> {
    fn report(&mut self, property: &str, change: Change) {
        self.changes.push(BreakingChange {
            event_type: self.event_type.to_owned(),
            property: property.to_owned(),
            change,
        });
    }

    /// Compares two schemas of the value at `path`, then what they contain.
    fn schema(&mut self, path: &str, released: &Value, current: &Value) {
        let (from, to) = (json_type(released), json_type(current));
        if from != to {
            self.report(
                path,
                Change::TypeChanged {
                    from: describe(&from),
                    to: describe(&to),
                },
            );
            return;
        }
        if let (Some(released), Some(current)) = (released.get("items"), current.get("items")) {
            self.schema(&format!("{path}[]"), released, current);
        }
        if released.get("properties").is_some() || current.get("properties").is_some() {
            self.object(path, released, current);
        }
    }

    fn object(&mut self, path: &str, released: &Value, current: &Value) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.")
        };
        let released_properties = released.get("properties").and_then(Value::as_object);
        for (name, released) in released_properties.into_iter().flatten() {
            let path = format!("{prefix}{name}");
            match property(current, name) {
                Some(current) => self.schema(&path, released, current),
                None => self.report(&path, Change::PropertyRemoved),
            }
        }
        let was_required = required(released);
        for name in required(current).difference(&was_required) {
            let change = if property(released, name).is_some() {
                Change::BecameRequired
            } else {
                Change::AddedRequired
            };
            self.report(&format!("{prefix}{name}"), change);
        }
    }
}

/// The JSON types a schema allows: its `type` (one or a list), or the union of the
/// alternatives of a `oneOf`/`anyOf` (how utoipa writes an optional reference). Empty
/// when the schema does not say, i.e. any type.
fn json_type(schema: &Value) -> BTreeSet<String> {
    match schema.get("type") {
        Some(Value::String(t)) => BTreeSet::from([t.clone()]),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => ["oneOf", "anyOf"]
            .iter()
            .filter_map(|keyword| schema.get(keyword).and_then(Value::as_array))
            .flatten()
            .flat_map(json_type)
            .collect(),
    }
}

fn describe(types: &BTreeSet<String>) -> String {
    if types.is_empty() {
        "any".to_owned()
    } else {
        types.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

fn property<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema.get("properties")?.get(name)
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn released() -> Value {
        json!({
            "type": "object",
            "required": ["order_id", "items"],
            "properties": {
                "order_id": {"type": "string", "format": "uuid"},
                "note": {"type": ["string", "null"]},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["quantity"],
                        "properties": {"quantity": {"type": "integer"}}
                    }
                }
            }
        })
    }

    fn changed(edit: impl FnOnce(&mut Value)) -> Vec<BreakingChange> {
        let mut current = released();
        edit(&mut current);
        compare("shop.test.v1", &released(), &current)
    }

    fn change(property: &str, change: Change) -> BreakingChange {
        BreakingChange {
            event_type: "shop.test.v1".to_owned(),
            property: property.to_owned(),
            change,
        }
    }

    #[test]
    fn an_unchanged_schema_has_no_breaking_change() {
        assert_eq!(changed(|_| {}), vec![]);
    }

    #[test]
    fn a_removed_property_is_breaking() {
        let changes = changed(|s| {
            s["properties"].as_object_mut().map(|p| p.remove("note"));
        });
        assert_eq!(changes, vec![change("note", Change::PropertyRemoved)]);
    }

    #[test]
    fn a_retyped_property_is_breaking_even_when_nested() {
        let changes = changed(|s| {
            s["properties"]["items"]["items"]["properties"]["quantity"] = json!({"type": "string"});
        });
        assert_eq!(
            changes,
            vec![change(
                "items[].quantity",
                Change::TypeChanged {
                    from: "integer".into(),
                    to: "string".into()
                }
            )]
        );
        assert_eq!(
            changes[0].to_string(),
            "shop.test.v1: property `items[].quantity` changed type from integer to string"
        );
    }

    #[test]
    fn a_property_that_is_no_longer_nullable_is_retyped() {
        let changes = changed(|s| s["properties"]["note"] = json!({"type": "string"}));
        assert_eq!(
            changes,
            vec![change(
                "note",
                Change::TypeChanged {
                    from: "null | string".into(),
                    to: "string".into()
                }
            )]
        );
    }

    #[test]
    fn a_newly_required_property_is_breaking() {
        let changes = changed(|s| s["required"] = json!(["order_id", "items", "note"]));
        assert_eq!(changes, vec![change("note", Change::BecameRequired)]);
    }

    #[test]
    fn a_new_required_property_is_breaking() {
        let changes = changed(|s| {
            s["properties"]["total_cents"] = json!({"type": "integer"});
            s["required"] = json!(["order_id", "items", "total_cents"]);
        });
        assert_eq!(changes, vec![change("total_cents", Change::AddedRequired)]);
    }

    #[test]
    fn a_new_optional_property_and_new_descriptions_are_allowed() {
        let changes = changed(|s| {
            s["properties"]["total_cents"] = json!({"type": ["integer", "null"]});
            s["properties"]["order_id"]["description"] = json!("The order.");
            s["description"] = json!("Now documented.");
        });
        assert_eq!(changes, vec![]);
    }

    #[test]
    fn a_property_that_became_optional_is_allowed() {
        assert_eq!(changed(|s| s["required"] = json!(["items"])), vec![]);
    }

    #[test]
    fn the_report_names_the_change_and_the_next_version() {
        let changes = changed(|s| {
            s["properties"].as_object_mut().map(|p| p.remove("note"));
        });
        let report = report(&changes);
        assert!(
            report.contains("  - shop.test.v1: property `note` was removed\n"),
            "{report}"
        );
        assert!(report.contains("new type (`shop.test.v2`)"), "{report}");
        assert_eq!(
            next_version("shop.order.placed.v9"),
            "shop.order.placed.v10"
        );
        assert_eq!(next_version("shop.order.placed"), "shop.order.placed.v2");
    }

    #[test]
    fn a_removed_event_type_is_breaking_and_a_new_one_is_not() {
        let released = BTreeMap::from([("shop.a.v1", json!({})), ("shop.b.v1", json!({}))]);
        let current = BTreeMap::from([("shop.b.v1", json!({})), ("shop.c.v1", json!({}))]);
        assert_eq!(
            breaking_changes(&released, &current),
            vec![BreakingChange {
                event_type: "shop.a.v1".to_owned(),
                property: String::new(),
                change: Change::EventRemoved
            }]
        );
    }
}
