//! The event tables of `docs/events.md`, generated so that the page cannot drift from the
//! code: the prose around them is written by hand, the part between [`START`] and [`END`]
//! comes from here.

use std::fmt::Write as _;

use serde_json::Value;

use super::{ContractError, EventContract};

/// The line that opens the generated part of the page.
pub const START: &str = "<!-- BEGIN generated event tables: `make contract` rewrites them from \
    shared/model; edit the doc comments in shared/model/src/events.rs, not this part -->";
/// The line that closes it.
pub const END: &str = "<!-- END generated event tables -->";

/// The overview table and one section per event type, in Markdown.
pub fn tables() -> Result<String, ContractError> {
    let events = super::events()?;
    let mut out = String::new();
    out.push_str("| Event type | Topic | Published by | Consumed by |\n|---|---|---|---|\n");
    for event in &events {
        // `write!` to a String cannot fail.
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | `{}` | {} | {} |",
            event.event_type,
            anchor(&heading(event)),
            event.topic,
            event.publisher,
            consumers(event),
        );
    }
    for event in &events {
        out.push('\n');
        section(&mut out, event);
    }
    Ok(out)
}

/// `page` with its generated part replaced by `tables`.
pub fn splice(page: &str, tables: &str) -> Result<String, ContractError> {
    let missing = || ContractError::MissingMarkers {
        start: START,
        end: END,
    };
    let start = page.find(START).ok_or_else(missing)? + START.len();
    let end = start + page[start..].find(END).ok_or_else(missing)?;
    Ok(format!("{}\n\n{tables}\n{}", &page[..start], &page[end..]))
}

fn heading(event: &EventContract) -> String {
    format!("`{}` ({})", event.event_type, event.name)
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn consumers(event: &EventContract) -> String {
    if event.consumers.is_empty() {
        "none (informational)".to_owned()
    } else {
        event.consumers.join(", ")
    }
}

fn section(out: &mut String, event: &EventContract) {
    let schema = &event.schema;
    let _ = writeln!(out, "### {}\n", heading(event));
    let _ = writeln!(out, "{}\n", one_line(schema.get("description")));
    let _ = writeln!(
        out,
        "- Topic: `{}` (RabbitMQ: exchange `{}`, routing key `{}`)",
        event.topic,
        super::asyncapi::EXCHANGE,
        event.event_type
    );
    let _ = writeln!(
        out,
        "- Partition key and `ce_subject`: `{}`",
        event.partition_key
    );
    let _ = writeln!(
        out,
        "- Published by: {} (`ce_source` `{}`)",
        event.publisher,
        super::source(event.publisher)
    );
    let _ = writeln!(out, "- Consumed by: {}", consumers(event));
    let _ = writeln!(
        out,
        "- Schema: [`docs/events/schemas/{0}.json`](events/schemas/{0}.json)\n",
        event.event_type
    );
    out.push_str("| Field | Type | Required | Meaning |\n|---|---|---|---|\n");
    fields(out, "", schema);
}

/// One row per property, nested objects (such as order lines) flattened as
/// `items[].quantity`. Required properties come first in declaration order (the order of
/// `required`), then optional ones by name.
fn fields(out: &mut String, prefix: &str, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let optional = properties
        .keys()
        .map(String::as_str)
        .filter(|name| !required.contains(name));
    for name in required.iter().copied().chain(optional) {
        let Some(property) = properties.get(name) else {
            continue;
        };
        let path = format!("{prefix}{name}");
        let _ = writeln!(
            out,
            "| `{path}` | {} | {} | {} |",
            type_name(property),
            if required.contains(&name) {
                "yes"
            } else {
                "no"
            },
            one_line(property.get("description")).replace('|', "\\|"),
        );
        fields(out, &format!("{path}."), property);
        if let Some(items) = property.get("items") {
            fields(out, &format!("{path}[]."), items);
        }
    }
}

/// How a reader would name the type: `string (uuid)`, `array of OrderLine`.
fn type_name(schema: &Value) -> String {
    let format = schema.get("format").and_then(Value::as_str);
    let title = schema.get("title").and_then(Value::as_str);
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => match schema.get("items") {
            Some(items) => format!("array of {}", type_name(items)),
            None => "array".to_owned(),
        },
        Some(Value::String(t)) if t == "object" => title.unwrap_or("object").to_owned(),
        Some(Value::String(t)) => match format {
            Some(format) => format!("{t} ({format})"),
            None => t.clone(),
        },
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

fn one_line(text: Option<&Value>) -> String {
    text.and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_the_ones_github_makes() {
        assert_eq!(
            anchor("`shop.inventory.stock-reserved.v1` (StockReserved)"),
            "shopinventorystock-reservedv1-stockreserved"
        );
    }

    #[test]
    fn the_generated_part_is_replaced_and_the_prose_kept() {
        let page = format!("# Events\n\nIntro.\n\n{START}\n\nold tables\n\n{END}\n\nOutro.\n");
        let spliced = splice(&page, "new tables\n").expect("has markers");
        assert_eq!(
            spliced,
            format!("# Events\n\nIntro.\n\n{START}\n\nnew tables\n\n{END}\n\nOutro.\n")
        );
        assert_eq!(
            splice(&spliced, "new tables\n").expect("idempotent"),
            spliced
        );
        assert!(splice("# Events\n", "tables").is_err());
    }

    #[test]
    fn fields_are_listed_with_nested_lines() {
        let tables = tables().expect("generates");
        assert!(tables.contains(
            "| `items[].quantity` | integer (int32) | yes | How many units (1 to 1000). |"
        ));
        assert!(tables.contains("| `items` | array of OrderLine | yes |"));
    }
}
