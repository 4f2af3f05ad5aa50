//! `events replay` keeps each event's routing key and filters on it like a topic binding,
//! and leaves nothing of its own on the broker.

use std::time::{Duration, SystemTime};

use lapin::options::BasicGetOptions;
use serde_json::json;
use weibo_relay::event::replay::{replay, ReplayOptions};

use crate::support::*;

async fn push(app: &TestApp, appid: &str, key: &str, type_: &str, data: String) {
    app.post_form(form(&signed_fields(appid, key, type_, &data, now())))
        .await
        .assert_success();
}

/// The routing keys of every message now in `queue`, in order.
async fn routing_keys(app: &TestApp, queue: &str) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(got) = app
        .channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        keys.push(got.delivery.routing_key.to_string());
    }
    keys
}

/// Exchanges on the broker whose name starts with `prefix`.
fn exchanges_named(prefix: &str) -> Vec<String> {
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_exchanges", "-q", "--no-table-headers", "name"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "rabbitmqctl list_exchanges failed");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn replayed_events_keep_their_routing_keys_and_the_filter_selects_like_a_binding() {
    let app = Harness::builder().start().await;
    let (a, b, c) = (unique_order_id(), unique_order_id(), unique_order_id());
    push(&app, APPID, SIGN_KEY, "2", order_data(&a, 201)).await;
    push(&app, APPID, SIGN_KEY, "2", order_data(&a, 301)).await;
    push(&app, OTHER_APPID, OTHER_SIGN_KEY, "2", order_data(&b, 201)).await;
    push(&app, APPID, SIGN_KEY, "7", json!({"note": c}).to_string()).await;
    push(&app, APPID, SIGN_KEY, "2", order_data(&c, 302)).await;

    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    app.channel
        .queue_declare(
            target.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let _target = queues_deleted_after(&[&target]);
    let settings = app.settings.clone();
    let run = |pattern: Option<&str>| {
        let options = ReplayOptions {
            since: SystemTime::now() - Duration::from_secs(3600),
            until: SystemTime::now() + Duration::from_secs(60),
            appid: None,
            sub_order_id: None,
            routing_key: pattern.map(|p| p.parse().unwrap()),
            to_queue: target.clone(),
        };
        let settings = settings.clone();
        async move {
            replay(&settings, &options, |_| {}, &Default::default())
                .await
                .unwrap()
        }
    };

    let all = run(None).await;
    assert_eq!((all.read, all.published), (5, 5));
    assert_eq!(
        routing_keys(&app, &target).await,
        [
            "order.sub_order.201",
            "order.sub_order.301",
            "order.sub_order.201",
            "order.type_7.none",
            "order.sub_order.302",
        ]
    );
    for (pattern, expected) in [
        (
            "order.sub_order.201",
            &["order.sub_order.201", "order.sub_order.201"][..],
        ),
        ("order.*.none", &["order.type_7.none"][..]),
        ("order.#.30*", &[][..]),
        ("#.301", &["order.sub_order.301"][..]),
        (
            "order.sub_order.*",
            &[
                "order.sub_order.201",
                "order.sub_order.301",
                "order.sub_order.201",
                "order.sub_order.302",
            ][..],
        ),
        (
            "order.#",
            &[
                "order.sub_order.201",
                "order.sub_order.301",
                "order.sub_order.201",
                "order.type_7.none",
                "order.sub_order.302",
            ][..],
        ),
    ] {
        let report = run(Some(pattern)).await;
        assert_eq!(report.published, expected.len() as u64, "{pattern}");
        assert_eq!(routing_keys(&app, &target).await, expected, "{pattern}");
    }

    // An interrupted replay stops at once and cleans up too.
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    let options = ReplayOptions {
        since: SystemTime::now() - Duration::from_secs(3600),
        until: SystemTime::now(),
        appid: None,
        sub_order_id: None,
        routing_key: None,
        to_queue: target.clone(),
    };
    let report = replay(&app.settings, &options, |_| {}, &stopped)
        .await
        .unwrap();
    assert!(report.interrupted);
    assert_eq!(report.published, 0);

    // Each replay's exchange went with it, and with it the binding: nothing left to route.
    let prefix = format!("{}.replay.", app.settings.amqp.events_exchange);
    assert_eq!(exchanges_named(&prefix), Vec::<String>::new());
    assert_eq!(app.depth_of(&target).await, 0);
}
