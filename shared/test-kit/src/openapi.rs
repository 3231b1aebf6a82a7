//! The check that a service's served OpenAPI document equals the committed one.

use serde_json::Value;

/// Fails with the first JSON path where `served` and the committed document differ, and
/// the command that regenerates the committed documents.
#[track_caller]
pub fn assert_matches_committed(served: &Value, committed_json: &str) {
    let committed: Value =
        serde_json::from_str(committed_json).unwrap_or_else(|e| panic!("committed document: {e}"));
    if let Some(difference) = first_difference("", served, &committed) {
        panic!(
            "the served OpenAPI document differs from the committed one at {difference}; \
             run `make openapi` and commit the result"
        );
    }
}

fn first_difference(path: &str, served: &Value, committed: &Value) -> Option<String> {
    match (served, committed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| {
                let here = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(&here, x, y),
                    (Some(_), None) => Some(format!("{here} (only in the served document)")),
                    (None, _) => Some(format!("{here} (only in the committed document)")),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}/{i}"), x, y)),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: served {a}, committed {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let served = serde_json::json!({"paths": {"orders": {"get": 1}}, "info": "same"});
        let committed = serde_json::json!({"paths": {"orders": {"get": 2}}, "info": "same"});
        assert_eq!(
            first_difference("", &served, &committed).as_deref(),
            Some("/paths/orders/get: served 1, committed 2")
        );
        assert_eq!(first_difference("", &served, &served), None);
        let extra = serde_json::json!({"paths": {"orders": {"get": 1}}, "info": "same", "x": 0});
        assert_eq!(
            first_difference("", &extra, &served).as_deref(),
            Some("/x (only in the served document)")
        );
    }
}
