//! Writes the event contract from the types in shop-model (`make contract`):
//! `docs/events/schemas/*.json`, `docs/events/asyncapi.json` and the event tables of
//! `docs/events.md`.
//!
//! With `--release` it also records the current schemas in `docs/events/released/`, the
//! baseline that `tests/contract.rs` checks for breaking changes. It refuses when a schema
//! changed incompatibly since the last release: such a change needs a new event version,
//! not a new baseline. (Retiring an old version is deliberate: delete its released file by
//! hand, in the same change, once nothing consumes it.)
//!
//! Usage: `cargo run -p shop-model --example write-event-contract [-- --release]`

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool that says what it wrote, or why it did not"
)]

use std::{
    collections::BTreeMap,
    error::Error,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use serde_json::Value;
use shop_model::contract::{self, asyncapi, catalogue, compat};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let release = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--release") => true,
        Some(other) => {
            return Err(format!(
                "unknown argument {other}; usage: write-event-contract [--release]"
            )
            .into());
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root
        .canonicalize()
        .map_err(|e| format!("finding the repository root {}: {e}", root.display()))?;
    let writer = Writer { root };

    let schemas = contract::json_schemas()?;
    writer.schemas("docs/events/schemas", &schemas, true)?;
    writer.json("docs/events/asyncapi.json", &asyncapi::document()?)?;
    let page = writer.read("docs/events.md")?;
    writer.text(
        "docs/events.md",
        &catalogue::splice(&page, &catalogue::tables()?)?,
    )?;

    if release {
        let released = writer.read_schemas("docs/events/released")?;
        let breaking = compat::breaking_changes(&released, &schemas);
        if !breaking.is_empty() {
            return Err(format!("not released: {}", compat::report(&breaking)).into());
        }
        writer.schemas("docs/events/released", &schemas, false)?;
    }
    Ok(())
}

struct Writer {
    root: PathBuf,
}

impl Writer {
    /// Writes one `<event type>.json` per schema into `dir`; with `prune`, deletes the
    /// `.json` files there that no event type has any more.
    fn schemas(&self, dir: &str, schemas: &BTreeMap<&str, Value>, prune: bool) -> Result<()> {
        let path = self.root.join(dir);
        fs::create_dir_all(&path).map_err(|e| format!("creating {dir}: {e}"))?;
        if prune {
            for stale in json_files(&path)? {
                if !schemas.contains_key(stale.as_str()) {
                    let file = format!("{dir}/{stale}.json");
                    fs::remove_file(self.root.join(&file))
                        .map_err(|e| format!("removing {file}: {e}"))?;
                    println!("removed {file}");
                }
            }
        }
        for (event_type, schema) in schemas {
            self.json(&format!("{dir}/{event_type}.json"), schema)?;
        }
        Ok(())
    }

    fn read_schemas(&self, dir: &str) -> Result<BTreeMap<String, Value>> {
        let path = self.root.join(dir);
        if !path.exists() {
            return Ok(BTreeMap::new());
        }
        json_files(&path)?
            .into_iter()
            .map(|event_type| {
                let file = format!("{dir}/{event_type}.json");
                let schema = serde_json::from_str(&self.read(&file)?)
                    .map_err(|e| format!("parsing {file}: {e}"))?;
                Ok((event_type, schema))
            })
            .collect()
    }

    /// Pretty JSON with sorted keys, so that the files do not depend on whether some
    /// other crate turned on serde_json's `preserve_order`.
    fn json(&self, file: &str, value: &Value) -> Result<()> {
        let text = serde_json::to_string_pretty(&sorted(value))
            .map_err(|e| format!("serialising {file}: {e}"))?;
        self.text(file, &format!("{text}\n"))
    }

    /// Writes `text` to `file` unless it holds that already, so that only what changed is
    /// reported (and touched).
    fn text(&self, file: &str, text: &str) -> Result<()> {
        let path = self.root.join(file);
        if fs::read_to_string(&path).is_ok_and(|current| current == text) {
            return Ok(());
        }
        fs::write(path, text).map_err(|e| format!("writing {file}: {e}"))?;
        println!("wrote {file}");
        Ok(())
    }

    fn read(&self, file: &str) -> Result<String> {
        Ok(fs::read_to_string(self.root.join(file)).map_err(|e| format!("reading {file}: {e}"))?)
    }
}

/// The names, without `.json`, of the JSON files in `dir`.
fn json_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let entries: BTreeMap<&String, Value> =
                object.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}
