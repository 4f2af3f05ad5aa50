//! Reading deploy/: its files, YAML documents, the filled-in example configuration.

use lapin::types::{AMQPValue, FieldTable};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use weibo_relay::amqp::Names;
use weibo_relay::amqp::Topology;
use weibo_relay::settings::{is_placeholder, Settings};
use weibo_relay::startup::Roles;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn deploy() -> PathBuf {
    repo().join("deploy")
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `exts`, sorted.
pub(crate) fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path, exts));
        } else if exts
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// All documents of a (possibly multi-document) YAML file; each must be a mapping.
pub(crate) fn documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    let docs: Vec<Yaml> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut doc =
                Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // `<<: *anchor` as compose applies it.
            doc.apply_merge()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            doc
        })
        .collect();
    assert!(!docs.is_empty(), "{}: no YAML document", path.display());
    for doc in &docs {
        assert!(
            doc.is_mapping(),
            "{}: not a mapping: {doc:?}",
            path.display()
        );
    }
    docs
}

pub(crate) fn s(v: &Yaml) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

pub(crate) fn strings(v: &Yaml) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {v:?}"))
        .iter()
        .map(s)
        .collect()
}

/// The Kubernetes objects of deploy/k8s, applied with `kubectl apply -f deploy/k8s/`.
pub(crate) fn k8s() -> Vec<Yaml> {
    let dir = deploy().join("k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            docs.extend(documents(&path));
        }
    }
    docs
}

pub(crate) fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

/// The example Secret, kept outside deploy/k8s/ so applying that directory never applies it.
pub(crate) fn example_secret() -> Yaml {
    let docs = documents(&deploy().join("examples/k8s-secret.yaml"));
    find(&docs, "Secret", "weibo-relay").clone()
}

/// `text` as an operator fills it in: every quoted placeholder secret, and a placeholder
/// password inside a URL, replaced by a real-looking value.
pub(crate) fn filled_in(text: &str) -> String {
    const REAL: &str = "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f";
    let mut out = String::new();
    for (i, piece) in text.split('"').enumerate() {
        if i % 2 == 1 && is_placeholder(piece) {
            match piece.split_once("://") {
                Some((scheme, rest)) => match rest.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        let user = userinfo.split(':').next().unwrap();
                        out.push_str(&format!("{scheme}://{user}:{REAL}@{host}"));
                    }
                    // An example host (relay.example.com): the operator's own name, not a
                    // secret; it loads as it is.
                    None => out.push_str(piece),
                },
                None => out.push_str(REAL),
            }
        } else {
            out.push_str(piece);
        }
        out.push('"');
    }
    out.pop();
    out
}

/// Loads `text` as the file, with `env`, after filling in its placeholders.
pub(crate) fn load_filled(text: &str, env: Vec<(String, String)>) -> Settings {
    let tmp = std::env::temp_dir().join(format!(
        "weibo-relay-deploy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, filled_in(text)).unwrap();
    let loaded = Settings::load(Some(&tmp), env);
    std::fs::remove_file(&tmp).unwrap();
    loaded.unwrap_or_else(|e| panic!("filled-in config does not load: {e}"))
}

/// A compose value with its `${VAR:-default}` taken as the default and its required
/// `${VAR:?message}` set, as `docker compose` would with the variables the README exports.
pub(crate) fn compose_expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let inner = &rest[start + 2..end];
        match (inner.split_once(":-"), inner.split_once(":?")) {
            (Some((_, default)), _) => out.push_str(default),
            (_, Some((var, _))) => out.push_str(&format!("set-{}", var.to_ascii_lowercase())),
            _ => panic!("unexpected compose variable {inner}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The topology the app declares for the default settings, as it would appear in a
/// definitions file. Unknown argument types fail loudly rather than compare as equal.
pub(crate) fn arguments_json(table: &FieldTable) -> Json {
    let map = table
        .inner()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AMQPValue::LongString(s) => {
                    Json::String(String::from_utf8(s.as_bytes().to_vec()).unwrap())
                }
                AMQPValue::LongLongInt(i) => json!(i),
                AMQPValue::Boolean(b) => json!(b),
                other => panic!("argument {k}: no JSON form chosen for {other:?}"),
            };
            (k.as_str().to_owned(), v)
        })
        .collect();
    Json::Object(map)
}

pub(crate) fn declared_topology() -> Topology {
    let s = Settings::load(None, std::iter::empty()).unwrap();
    Topology::for_roles(&Names::new(&s.amqp), &s, Roles::Serve)
}

pub(crate) fn keys(v: &Json) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}
