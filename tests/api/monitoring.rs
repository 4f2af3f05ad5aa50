//! The operator's kit names only what the relay exports, and shows everything it exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use weibo_relay::startup::Roles;

use crate::helpers::*;
use crate::rig::{RigOptions, WorkerRig};

/// Every `weibo_relay_*` name in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("weibo_relay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].trim_end_matches('_').to_owned());
        rest = &tail[end..];
    }
    names
}

/// The family a sample name belongs to (`_bucket`, `_sum`, `_count` of a histogram).
fn family<'a>(name: &'a str, exported: &BTreeSet<String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if exported.contains(base) {
                return base;
            }
        }
    }
    name
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_exactly_the_metrics_the_relay_exports() {
    // A serve process that holds a token and has swept once: every family has a series.
    let rig = WorkerRig::start_with(RigOptions {
        roles: Roles::Serve,
        adjust: Box::new(|s, _| {
            s.reconcile.interval_secs = 1;
            s.reconcile.settle_secs = 1;
        }),
        ..Default::default()
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "a reconciliation sweep",
        || async {
            rig.app
                .get("/metrics")
                .await
                .body
                .contains("weibo_relay_reconcile_last_success_timestamp_seconds{")
        },
    )
    .await;
    let body = rig.app.get("/metrics").await.body;
    let exported: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(exported.len() >= 18, "{exported:?}");

    let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let mut on_dashboard = BTreeSet::new();
    for file in [
        "grafana-dashboard.json",
        "alerts.rules.yml",
        "alerts.test.yml",
        "prometheusrule.yaml",
    ] {
        let text = std::fs::read_to_string(kit.join(file)).unwrap();
        for name in named(&text) {
            let family = family(&name, &exported).to_owned();
            assert!(
                exported.contains(&family),
                "{file} names {name}, which the relay does not export"
            );
            if file == "grafana-dashboard.json" {
                on_dashboard.insert(family);
            }
        }
    }
    let missing: Vec<&String> = exported.difference(&on_dashboard).collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");
}
