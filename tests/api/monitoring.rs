//! The operator's kit names only what the relay exports, and shows everything it exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use weibo_relay::startup::Roles;

use crate::support::*;

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

/// Every metric family a `serve` process exports once it holds a token and has swept once
/// (so every family has a series).
async fn exported() -> BTreeSet<String> {
    let rig = Harness::builder()
        .roles(Roles::Serve)
        .settings(|s| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 1.try_into().unwrap();
        })
        .rig()
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
    // The gateway's counter (a relay with `gateway.bind`) has no series, so no `# TYPE`
    // line, before its first request.
    let mut exported = exported;
    exported.insert("weibo_relay_gateway_calls_total".to_owned());
    exported
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_exactly_the_metrics_the_relay_exports() {
    let exported = exported().await;
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

/// deploy/README's metric table lists every metric the relay exports, and nothing else, so an
/// operator reading it finds every name the dashboard and the alerts use.
#[tokio::test]
async fn the_deploy_readme_metric_table_lists_exactly_the_metrics_the_relay_exports() {
    let exported = exported().await;
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/README.md"))
            .unwrap();
    let table = readme
        .split("**Metrics**")
        .nth(1)
        .expect("deploy/README.md has its **Metrics** table");
    let listed: BTreeSet<String> = table
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(['`', '{']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = exported.difference(&listed).collect();
    let extra: Vec<&String> = listed.difference(&exported).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "deploy/README.md's metric table lacks {missing:?} and lists {extra:?}, which the relay does not export"
    );
}

/// A worker exports how many commands wait: 10 commands behind one slow call (one in
/// flight, nine ready) and three dead commands read as exactly 9 and 3 within a reading
/// period (5 s), the numbers WeiboRelayFulfilmentBacklog watches.
#[tokio::test]
async fn a_worker_exports_how_many_commands_wait_in_the_work_and_dead_queues() {
    let rig = Harness::builder()
        .settings(|s| s.weibo.timeout_ms = 12_000.try_into().unwrap())
        .settings(|s| {
            s.worker.prefetch = 1.try_into().unwrap();
            s.worker.concurrency = 1.try_into().unwrap();
        })
        .rig()
        .await;
    let reading = |queue: &'static str| {
        let rig = &rig;
        async move {
            rig.metric(&format!("weibo_relay_queue_messages{{queue=\"{queue}\"}} "))
                .await
        }
    };
    eventually(Duration::from_secs(7), "both queues read empty", || async {
        reading("fulfilment").await.ends_with(" 0") && reading("dead").await.ends_with(" 0")
    })
    .await;
    // Every call now takes longer than a reading period: the first command stays in flight.
    rig.faults(serde_json::json!({"latency_ms": 60_000})).await;
    let ids = rig.create_orders(10).await;
    for id in &ids {
        rig.send(serde_json::json!({"appid": APPID, "sub_order_id": id, "action": "finish"}))
            .await;
    }
    let dead = weibo_relay::amqp::Names::new(&rig.app.settings.amqp)
        .dead()
        .to_owned();
    for _ in 0..3 {
        rig.app
            .channel
            .basic_publish(
                "".into(),
                dead.as_str().into(),
                Default::default(),
                b"{}",
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(11), "9 waiting and 3 dead", || async {
        reading("fulfilment").await == "weibo_relay_queue_messages{queue=\"fulfilment\"} 9"
            && reading("dead").await == "weibo_relay_queue_messages{queue=\"dead\"} 3"
    })
    .await;
    rig.faults(serde_json::json!({"latency_ms": 0})).await;
}
