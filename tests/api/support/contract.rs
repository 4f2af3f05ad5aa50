//! The documents as tests read them: `docs/schemas/*.json` and `docs/openapi.yaml`, and
//! assertions that an instance is what they describe.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub(crate) fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

pub(crate) fn schema_file(name: &str) -> Value {
    let path = docs().join("schemas").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics with every error when `instance` does not match `schema`; `what` names both.
pub(crate) fn assert_matches(what: &str, schema: &Value, instance: &Value) {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("  at '{}': {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}\ninstance: {instance:#}",
        errors.join("\n")
    );
}

/// Validates `instance` against `docs/schemas/<file>`.
pub(crate) fn assert_schema(file: &str, instance: &Value) {
    assert_matches(
        &format!("docs/schemas/{file}"),
        &schema_file(file),
        instance,
    );
}

/// `docs/openapi.yaml` with `./schemas/*.json` references read from their files.
pub(crate) struct OpenApi(Value);

impl OpenApi {
    pub(crate) fn load() -> Self {
        Self::load_file("openapi.yaml")
    }

    /// Another OpenAPI document of `docs/` (`gateway-openapi.yaml`).
    pub(crate) fn load_file(name: &str) -> Self {
        let path = docs().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        Self(serde_yaml_ng::from_str(&text).unwrap())
    }

    /// The JSON schema of the answer to `method path` with `status`, every reference inlined.
    /// Panics when the document does not list that status.
    pub(crate) fn answer_schema(&self, method: &str, path: &str, status: u16) -> Value {
        // A response may itself be a reference (`#/components/responses/..`).
        let response = self.inline(&self.0["paths"][path][method]["responses"][status.to_string()]);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "docs/openapi.yaml lists no JSON answer {status} for {method} {path}"
        );
        self.inline(schema)
    }

    /// A component schema, every reference inlined.
    pub(crate) fn component(&self, name: &str) -> Value {
        self.inline(&self.0["components"]["schemas"][name])
    }

    pub(crate) fn inline(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
                Some(reference) => self.inline(&self.resolve(reference)),
                None => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v)))
                        .collect(),
                ),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| self.inline(v)).collect()),
            other => other.clone(),
        }
    }

    /// `#/pointer` in this document, or `./schemas/file.json#/pointer` (its own internal
    /// references inlined too).
    pub(crate) fn resolve(&self, reference: &str) -> Value {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let document = match file {
            "" => self.0.clone(),
            file => {
                let name = file
                    .strip_prefix("./schemas/")
                    .expect("a schemas/ reference");
                let schema = schema_file(name);
                // The file's own references (#/$defs/..) are to itself.
                return OpenApi(schema.clone()).inline(
                    schema
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("no {reference}")),
                );
            }
        };
        document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {reference}"))
            .clone()
    }
}

/// Checks one answer against answer.json and against what openapi.yaml lists for
/// `method path` at its status (or, with `component`, that component schema).
pub(crate) fn assert_answer(
    api: &OpenApi,
    method: &str,
    path: &str,
    answer: &Answer,
    component: Option<&str>,
) {
    let body: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} {}: not JSON ({e}): {}",
            answer.status, answer.body
        )
    });
    assert_schema("answer.json", &body);
    let (what, schema) = match component {
        Some(name) => (
            format!(
                "{method} {path} {} (components/schemas/{name})",
                answer.status
            ),
            api.component(name),
        ),
        None => (
            format!("docs/openapi.yaml {method} {path} {}", answer.status),
            api.answer_schema(method, path, answer.status),
        ),
    };
    assert_matches(&what, &schema, &body);
}
