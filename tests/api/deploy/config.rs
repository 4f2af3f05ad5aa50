//! The shipped configuration files load once filled in, and refuse their placeholders.

use super::support::*;
use std::collections::BTreeSet;
use weibo_relay::settings::{is_placeholder, Settings};

#[test]
fn deploy_example_config_loads_once_filled_in() {
    let settings = load_filled(&read(&deploy().join("relay.example.toml")), Vec::new());
    // The image runs it as is: it must listen beyond loopback.
    assert_eq!(settings.http.bind.to_string(), "0.0.0.0:8080");
    assert_eq!(settings.merchants.len(), 1);
}

/// A relay started on a shipped example, unchanged, must refuse: otherwise it would accept
/// pushes signed with a key anyone can read here.
#[test]
fn deploy_shipped_placeholders_are_refused_naming_the_key() {
    let err = Settings::load(Some(&deploy().join("relay.example.toml")), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid configuration: merchants[0].sign_key: "),
        "{err}"
    );
    let secret = example_secret();
    let tmp = std::env::temp_dir().join(format!(
        "weibo-relay-deploy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, s(&secret["stringData"]["relay.toml"])).unwrap();
    let loaded = Settings::load(Some(&tmp), Vec::new());
    std::fs::remove_file(&tmp).unwrap();
    let err = loaded.unwrap_err().to_string();
    assert!(
        err.starts_with("invalid configuration: merchants[0].sign_key: "),
        "{err}"
    );
    let url = s(&secret["stringData"]["amqp-url"]);
    let err = Settings::load(
        None,
        vec![("WEIBO_RELAY__AMQP__URL".to_owned(), url.to_owned())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid configuration: amqp.url: "),
        "{err}"
    );
    // Every quoted secret-looking value anywhere under deploy/ is one the loader refuses.
    for path in files(&deploy(), &["toml", "yaml"]) {
        let text = read(&path);
        for line in text.lines() {
            let lower = line.to_ascii_lowercase();
            if ["sign_key", "client_secret", "password", "amqp-url"]
                .iter()
                .any(|k| lower.contains(k))
                && line.contains("REPLACE")
            {
                assert!(is_placeholder(line), "{}: {line}", path.display());
            }
        }
    }
    // `kubectl apply -f deploy/k8s/` (recursively, too) must create no Secret of ours: an
    // example Secret applied as it is would run the relay on placeholders.
    for path in files(&deploy().join("k8s"), &["yaml", "yml"]) {
        for doc in documents(&path) {
            assert_ne!(
                doc["kind"].as_str(),
                Some("Secret"),
                "{} holds a Secret",
                path.display()
            );
        }
    }
}

#[test]
fn deploy_every_toml_file_is_a_valid_config_once_filled_in() {
    let tomls = files(&deploy(), &["toml"]);
    assert!(!tomls.is_empty());
    for path in tomls {
        load_filled(&read(&path), Vec::new());
    }
}

#[test]
fn deploy_every_yaml_file_is_well_formed() {
    let yamls = files(&deploy(), &["yaml", "yml"]);
    let names: BTreeSet<String> = yamls
        .iter()
        .map(|p| {
            p.strip_prefix(deploy())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for expected in [
        "compose.yaml",
        "k8s/configmap.yaml",
        "examples/k8s-secret.yaml",
        "k8s/receiver.yaml",
        "k8s/worker.yaml",
        "k8s/optional/keda-worker-scaler.yaml",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    for path in &yamls {
        documents(path);
    }
    // Kubernetes objects: complete, and namespace-agnostic (kubectl -n chooses).
    for dir in ["k8s", "k8s/optional"] {
        for path in files(&deploy().join(dir), &["yaml"]) {
            for doc in documents(&path) {
                assert!(doc["apiVersion"].is_string(), "{}", path.display());
                assert!(doc["kind"].is_string(), "{}", path.display());
                assert!(doc["metadata"]["name"].is_string(), "{}", path.display());
                assert!(
                    doc["metadata"]["namespace"].is_null(),
                    "{}: hard-coded namespace",
                    path.display()
                );
            }
        }
    }
    assert_eq!(documents(&deploy().join("k8s/receiver.yaml")).len(), 3);
}
