//! One self-contained JSON Schema per event, from utoipa's `ToSchema` output.
//!
//! utoipa writes OpenAPI 3.1 schemas, which are JSON Schema 2020-12, but it refers to the
//! schemas of nested types (`OrderId`, `OrderLine`) as `#/components/schemas/...` of an
//! OpenAPI document. Outside such a document those references dangle, so they are inlined
//! here: each file can be read, validated against and diffed on its own.

use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::ContractError;
use crate::events::Event;

/// The dialect of every schema: what OpenAPI 3.1 schemas are.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

const COMPONENTS: &str = "#/components/schemas/";

/// The payload schema of `E`, with `$schema`, `$id` (the event type), `title` (the Rust
/// type) and the type's doc comment as `description`.
pub fn standalone<E: Event + ToSchema>() -> Result<Value, ContractError> {
    let to_json = |schema| {
        serde_json::to_value(schema).map_err(|source| ContractError::Serialize {
            event_type: E::TYPE,
            source,
        })
    };
    let mut referenced = Vec::new();
    E::schemas(&mut referenced);
    let components = referenced
        .into_iter()
        .map(|(name, schema)| Ok((name, to_json(schema)?)))
        .collect::<Result<Map<String, Value>, ContractError>>()?;
    let payload = Inliner {
        event_type: E::TYPE,
        components: &components,
    }
    .inline(to_json(E::schema())?, &mut Vec::new())?;

    let mut schema = Map::new();
    schema.insert("$schema".into(), DIALECT.into());
    schema.insert("$id".into(), E::TYPE.into());
    schema.insert("title".into(), E::name().into());
    if let Value::Object(payload) = payload {
        schema.extend(payload);
    }
    Ok(Value::Object(schema))
}

struct Inliner<'a> {
    event_type: &'static str,
    components: &'a Map<String, Value>,
}

impl Inliner<'_> {
    /// `schema` with every `$ref` to a component replaced by that component's schema
    /// (titled with its name). Keywords beside the `$ref`, such as the field's own
    /// `description`, take precedence over the component's. `visiting` holds the
    /// components being inlined, to stop on a recursive type instead of overflowing.
    fn inline(&self, schema: Value, visiting: &mut Vec<String>) -> Result<Value, ContractError> {
        match schema {
            Value::Object(mut object) => {
                let Some(reference) = object.remove("$ref") else {
                    return object
                        .into_iter()
                        .map(|(key, value)| Ok((key, self.inline(value, visiting)?)))
                        .collect::<Result<Map<_, _>, _>>()
                        .map(Value::Object);
                };
                let mut resolved = self.resolve(&reference, visiting)?;
                if let Value::Object(resolved) = &mut resolved {
                    for (key, value) in object {
                        resolved.insert(key, self.inline(value, visiting)?);
                    }
                }
                Ok(resolved)
            }
            Value::Array(items) => items
                .into_iter()
                .map(|item| self.inline(item, visiting))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            scalar => Ok(scalar),
        }
    }

    fn resolve(
        &self,
        reference: &Value,
        visiting: &mut Vec<String>,
    ) -> Result<Value, ContractError> {
        let unresolved = || ContractError::UnresolvedReference {
            event_type: self.event_type,
            reference: reference.to_string(),
        };
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix(COMPONENTS))
            .ok_or_else(unresolved)?;
        let component = self.components.get(name).ok_or_else(unresolved)?;
        if visiting.iter().any(|v| v == name) {
            return Err(ContractError::RecursiveSchema {
                event_type: self.event_type,
                name: name.to_owned(),
            });
        }
        visiting.push(name.to_owned());
        let mut inlined = self.inline(component.clone(), visiting)?;
        visiting.pop();
        if let Value::Object(inlined) = &mut inlined {
            inlined.entry("title").or_insert_with(|| Value::from(name));
        }
        Ok(inlined)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::events::{OrderPlaced, UserRegistered};

    fn has_reference(value: &Value) -> bool {
        match value {
            Value::Object(object) => {
                object.contains_key("$ref") || object.values().any(has_reference)
            }
            Value::Array(items) => items.iter().any(has_reference),
            _ => false,
        }
    }

    #[test]
    fn nested_types_are_inlined_with_their_names_as_titles() {
        let schema = standalone::<OrderPlaced>().expect("generates");
        assert!(!has_reference(&schema), "{schema:#}");
        assert_eq!(schema["$id"], "shop.order.placed.v1");
        assert_eq!(schema["title"], "OrderPlaced");
        let line = &schema["properties"]["items"]["items"];
        assert_eq!(line["title"], "OrderLine");
        assert_eq!(
            line["properties"]["product_id"],
            json!({
                "type": "string",
                "format": "uuid",
                "title": "ProductId",
                "description": "The product ordered.",
            })
        );
    }

    #[test]
    fn the_doc_comments_become_descriptions() {
        let schema = standalone::<UserRegistered>().expect("generates");
        assert_eq!(schema["$schema"], DIALECT);
        assert_eq!(
            schema["description"],
            "A customer account was created. payment-service opens their wallet."
        );
        assert_eq!(
            schema["required"],
            json!(["user_id", "email", "name"]),
            "every field that is not an Option is required"
        );
    }

    #[test]
    fn a_dangling_or_recursive_reference_is_an_error() {
        let components = Map::from_iter([(
            "Node".to_owned(),
            json!({"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}),
        )]);
        let inliner = Inliner {
            event_type: "test.v1",
            components: &components,
        };
        assert!(matches!(
            inliner.inline(
                json!({"$ref": "#/components/schemas/Missing"}),
                &mut Vec::new()
            ),
            Err(ContractError::UnresolvedReference { .. })
        ));
        assert!(matches!(
            inliner.inline(
                json!({"$ref": "#/components/schemas/Node"}),
                &mut Vec::new()
            ),
            Err(ContractError::RecursiveSchema { .. })
        ));
    }
}
