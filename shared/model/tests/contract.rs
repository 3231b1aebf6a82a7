//! The published event contract: the committed files under `docs/events/` and the event
//! tables of `docs/events.md` are what the code generates, the generated contract says
//! what the services really do, and no released event changed in a way that would break
//! its consumers.

// A panic is how a test (and its helpers) fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;
use shop_model::{
    OrderId, PaymentId, ProductId, UserId,
    contract::{self, asyncapi, catalogue, compat},
    events::{
        CONSUMERS, EVENT_TYPES, Event, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced,
        PaymentFailed, PaymentRefunded, PaymentSucceeded, StockRejected, StockReleased,
        StockReserved, UserRegistered, topics,
    },
};

const REGENERATE: &str = "run `cargo run -p shop-model --example write-event-contract` \
    (`make contract`) and commit the result";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The `<event type>.json` files of `dir`, parsed, by event type.
fn read_schemas(dir: &Path) -> BTreeMap<String, Value> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let stem = path.file_stem().expect("a file name").to_string_lossy();
            (stem.into_owned(), read_json(&path))
        })
        .collect()
}

/// Where `committed` and `generated` first differ, as a JSON path with both values.
fn first_difference(path: &str, committed: &Value, generated: &Value) -> Option<String> {
    match (committed, generated) {
        (Value::Object(c), Value::Object(g)) => {
            let keys: BTreeSet<&String> = c.keys().chain(g.keys()).collect();
            keys.into_iter().find_map(|key| {
                let path = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{path}.{key}")
                } else {
                    format!("{path}[{key:?}]")
                };
                match (c.get(key), g.get(key)) {
                    (Some(c), Some(g)) => first_difference(&path, c, g),
                    (Some(_), None) => Some(format!("{path}: committed, but no longer generated")),
                    (None, _) => Some(format!("{path}: generated, but not committed")),
                }
            })
        }
        (Value::Array(c), Value::Array(g)) if c.len() == g.len() => c
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (c, g))| first_difference(&format!("{path}[{i}]"), c, g)),
        _ if committed == generated => None,
        _ => Some(format!(
            "{path}: committed {committed}, generated {generated}"
        )),
    }
}

fn assert_same(file: &str, committed: &Value, generated: &Value) {
    if let Some(difference) = first_difference("$", committed, generated) {
        panic!("{file} is out of date (first difference at {difference}): {REGENERATE}");
    }
}

#[test]
fn the_committed_schemas_are_what_the_code_generates() {
    let generated = contract::json_schemas().expect("the contract generates");
    let committed = read_schemas(&docs().join("events/schemas"));

    let generated_types: BTreeSet<&str> = generated.keys().copied().collect();
    let committed_types: BTreeSet<&str> = committed.keys().map(String::as_str).collect();
    assert_eq!(
        committed_types, generated_types,
        "docs/events/schemas/ does not hold one file per event type: {REGENERATE}"
    );
    for (event_type, schema) in &generated {
        assert_same(
            &format!("docs/events/schemas/{event_type}.json"),
            &committed[*event_type],
            schema,
        );
    }
}

#[test]
fn the_committed_asyncapi_document_is_what_the_code_generates() {
    let generated = asyncapi::document().expect("the contract generates");
    let committed = read_json(&docs().join("events/asyncapi.json"));
    assert_same("docs/events/asyncapi.json", &committed, &generated);
}

#[test]
fn the_committed_event_tables_are_what_the_code_generates() {
    let page = read(&docs().join("events.md"));
    let tables = catalogue::tables().expect("the contract generates");
    let expected = catalogue::splice(&page, &tables).expect("docs/events.md has the markers");
    assert!(
        page == expected,
        "the event tables of docs/events.md are out of date: {REGENERATE}"
    );
}

#[test]
fn the_event_catalogue_describes_every_event_type() {
    let page = read(&docs().join("events.md"));
    for (event_type, topic) in EVENT_TYPES {
        assert!(
            page.contains(&format!("### `{event_type}`")),
            "docs/events.md has no section for {event_type}: {REGENERATE}"
        );
        assert!(page.contains(&format!("`{topic}`")), "{topic}");
    }
}

#[test]
fn no_released_event_changed_incompatibly() {
    let released = read_schemas(&docs().join("events/released"));
    assert!(
        !released.is_empty(),
        "docs/events/released/ is empty: record the released contract with \
         `cargo run -p shop-model --example write-event-contract -- --release`"
    );
    let current = contract::json_schemas().expect("the contract generates");
    let breaking = compat::breaking_changes(&released, &current);
    assert!(breaking.is_empty(), "{}", compat::report(&breaking));
}

/// One event of every type, as a publisher would send it.
struct Sample {
    event_type: &'static str,
    payload: Value,
    subject: String,
}

fn sample<E: Event>(event: E) -> Sample {
    Sample {
        event_type: E::TYPE,
        payload: serde_json::to_value(&event).expect("an event serialises"),
        subject: event.subject(),
    }
}

fn samples() -> Vec<Sample> {
    let (order_id, user_id, payment_id) = (OrderId::new(), UserId::new(), PaymentId::new());
    vec![
        sample(UserRegistered {
            user_id,
            email: "ada@example.com".into(),
            name: "Ada".into(),
        }),
        sample(OrderPlaced {
            order_id,
            user_id,
            items: vec![OrderLine {
                product_id: ProductId::new(),
                quantity: 2,
                unit_price_cents: 1250,
            }],
            total_cents: 2500,
        }),
        sample(OrderConfirmed { order_id, user_id }),
        sample(OrderCancelled {
            order_id,
            user_id,
            reason: "cancelled_by_customer".into(),
        }),
        sample(StockReserved {
            order_id,
            user_id,
            total_cents: 2500,
        }),
        sample(StockRejected {
            order_id,
            user_id,
            reason: "out_of_stock".into(),
            product_ids: vec![ProductId::new()],
        }),
        sample(StockReleased { order_id }),
        sample(PaymentSucceeded {
            order_id,
            user_id,
            payment_id,
            amount_cents: 2500,
        }),
        sample(PaymentFailed {
            order_id,
            user_id,
            reason: "insufficient_funds".into(),
        }),
        sample(PaymentRefunded {
            order_id,
            user_id,
            payment_id,
            amount_cents: 2500,
        }),
    ]
}

#[test]
fn there_is_a_sample_of_every_event_type() {
    let sampled: Vec<&str> = samples().iter().map(|s| s.event_type).collect();
    let all: Vec<&str> = EVENT_TYPES.iter().map(|(t, _)| *t).collect();
    assert_eq!(sampled, all, "add the new event type to samples()");
}

#[test]
fn the_documented_partition_key_of_every_event_is_its_subject() {
    let events = contract::events().expect("the contract generates");
    for (event, sample) in events.iter().zip(samples()) {
        assert_eq!(event.event_type, sample.event_type);
        assert_eq!(
            sample.payload[event.partition_key],
            Value::from(sample.subject.clone()),
            "{}: the subject is not the field `{}`",
            event.event_type,
            event.partition_key
        );
    }
}

/// What in `value` the JSON Schema `schema` does not allow, for the keywords the contract
/// uses (`type`, `format: uuid`, `properties`, `required`, `items`). Properties the schema
/// does not list are reported too: the contract must describe everything that is sent.
fn violations(path: &str, schema: &Value, value: &Value) -> Vec<String> {
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let type_ok = allowed.is_empty()
        || allowed.contains(&actual)
        || (actual == "integer" && allowed.contains(&"number"));
    if !type_ok {
        return vec![format!("{path}: a {actual}, the schema says {allowed:?}")];
    }
    let mut found = Vec::new();
    if schema["format"] == "uuid"
        && value
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_err())
    {
        found.push(format!("{path}: not a uuid"));
    }
    if let Value::Object(object) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                found.push(format!("{path}.{name}: required but missing"));
            }
        }
        for (name, field) in object {
            match schema["properties"].get(name) {
                Some(property) => {
                    found.extend(violations(&format!("{path}.{name}"), property, field))
                }
                None => found.push(format!("{path}.{name}: sent but not in the schema")),
            }
        }
    }
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            found.extend(violations(&format!("{path}[{i}]"), &schema["items"], item));
        }
    }
    found
}

#[test]
fn every_event_as_sent_matches_its_schema() {
    let schemas = contract::json_schemas().expect("the contract generates");
    for sample in samples() {
        let found = violations("$", &schemas[sample.event_type], &sample.payload);
        assert!(found.is_empty(), "{}: {found:#?}", sample.event_type);
    }
}

#[test]
fn the_schema_check_itself_finds_what_does_not_match() {
    let schemas = contract::json_schemas().expect("the contract generates");
    let schema = &schemas[OrderPlaced::TYPE];
    let mut payload = samples()[1].payload.clone();
    payload["items"][0]["quantity"] = Value::from("two");
    payload["order_id"] = Value::from("not-a-uuid");
    payload["coupon"] = Value::from("SPRING");
    payload
        .as_object_mut()
        .expect("an object")
        .remove("total_cents");
    let mut found = violations("$", schema, &payload);
    found.sort();
    assert_eq!(
        found,
        vec![
            "$.coupon: sent but not in the schema",
            "$.items[0].quantity: a string, the schema says [\"integer\"]",
            "$.order_id: not a uuid",
            "$.total_cents: required but missing",
        ]
    );
}

fn operations(document: &Value) -> Vec<(&String, &Value)> {
    document["operations"]
        .as_object()
        .expect("operations")
        .iter()
        .collect()
}

/// The message names of an operation (the last segment of each message reference).
fn operation_messages(operation: &Value) -> Vec<&str> {
    operation["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["$ref"].as_str())
        .filter_map(|r| r.rsplit('/').next())
        .collect()
}

fn operation_channel(operation: &Value) -> &str {
    operation["channel"]["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/channels/"))
        .expect("a channel reference")
}

#[test]
fn the_asyncapi_document_has_a_channel_per_topic_and_the_dead_letters() {
    let document = asyncapi::document().expect("the contract generates");
    assert_eq!(document["asyncapi"], "3.0.0");
    let channels: BTreeSet<&str> = document["channels"]
        .as_object()
        .expect("channels")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = topics::ALL
        .into_iter()
        .chain([topics::DEAD_LETTERS])
        .collect();
    assert_eq!(channels, expected);
    assert_eq!(document["servers"]["kafka"]["protocol"], "kafka");
    assert_eq!(document["servers"]["kafka"]["host"], "127.0.0.1:9092");
    assert_eq!(document["servers"]["rabbitmq"]["protocol"], "amqp");
}

#[test]
fn every_event_is_sent_once_by_the_service_that_owns_its_topic() {
    let document = asyncapi::document().expect("the contract generates");
    for (event_type, topic) in EVENT_TYPES {
        let senders: Vec<&String> = operations(&document)
            .into_iter()
            .filter(|(_, op)| op["action"] == "send")
            .filter(|(_, op)| operation_messages(op).contains(&event_type))
            .map(|(id, op)| {
                assert_eq!(operation_channel(op), topic, "{id}");
                id
            })
            .collect();
        let publisher = contract::publisher(topic).expect("a publisher");
        assert_eq!(
            senders,
            vec![&format!("{publisher}.send.{topic}")],
            "{event_type}"
        );
    }
}

#[test]
fn every_consumer_receives_exactly_the_events_it_handles() {
    let document = asyncapi::document().expect("the contract generates");
    for consumer in CONSUMERS {
        let prefix = format!("{}.receive.", consumer.name);
        let mut received: Vec<&str> = operations(&document)
            .into_iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .flat_map(|(_, op)| {
                assert_eq!(op["action"], "receive");
                let channel = operation_channel(op);
                let messages = operation_messages(op);
                for event_type in &messages {
                    assert!(
                        EVENT_TYPES.contains(&(*event_type, channel)),
                        "{event_type} is not published to {channel}"
                    );
                }
                messages
            })
            .collect();
        received.sort_unstable();
        let mut handled = consumer.event_types.to_vec();
        handled.sort_unstable();
        assert_eq!(received, handled, "{}", consumer.name);
    }
}

/// Every `$ref` string in `value`, with where it is.
fn references<'a>(path: String, value: &'a Value, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => found.push((path.clone(), reference)),
                    _ => references(format!("{path}/{key}"), value, found),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                references(format!("{path}/{i}"), item, found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_in_the_asyncapi_document_resolves() {
    let document = asyncapi::document().expect("the contract generates");
    let mut found = Vec::new();
    references(String::new(), &document, &mut found);
    assert!(found.len() > 50, "the document uses references");
    for (at, reference) in found {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        assert!(
            document.pointer(pointer).is_some(),
            "{at}: {reference} does not resolve"
        );
    }
}

#[test]
fn the_asyncapi_payloads_are_the_published_schemas() {
    let document = asyncapi::document().expect("the contract generates");
    for (event_type, mut schema) in contract::json_schemas().expect("the contract generates") {
        let schema = schema.as_object_mut().expect("an object schema");
        schema.remove("$schema");
        schema.remove("$id");
        let message = &document["components"]["messages"][event_type];
        assert_eq!(
            message["payload"]["$ref"],
            format!("#/components/schemas/{event_type}")
        );
        assert_eq!(
            document["components"]["schemas"][event_type],
            Value::Object(schema.clone()),
            "{event_type}"
        );
    }
}

#[test]
fn first_difference_names_the_json_path() {
    let committed = serde_json::json!({"a": {"b.c": [1, 2]}, "d": 1});
    let generated = serde_json::json!({"a": {"b.c": [1, 3]}, "e": 1});
    assert_eq!(
        first_difference("$", &committed, &generated).as_deref(),
        Some("$.a[\"b.c\"][1]: committed 2, generated 3")
    );
    assert_eq!(first_difference("$", &committed, &committed), None);
}
