//! Order states no push brought are reconciled from the order list, each once.

use super::support::*;
use crate::support::*;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn order_states_no_push_ever_brought_arrive_once_and_a_second_sweep_adds_nothing() {
    let rig = serve_reconciling(1, None).await;
    // The relay was down for every push of these orders: the platform gave up on them.
    let ids = rig.create_orders(6).await;
    eventually(Duration::from_secs(20), "six states reconciled", || async {
        rig.app.queue_depth().await >= 6
    })
    .await;
    sweeps(&rig, 2.0).await;
    let events = drain(&rig.app).await;
    assert_eq!(events.len(), 6, "{events:?}");
    let mut seen: Vec<&str> = Vec::new();
    for (message_id, source, body) in &events {
        let id = body["sub_order_id"].as_str().unwrap();
        assert_eq!(source, "reconcile");
        assert_eq!(message_id, &reconciled_id(id, "201"));
        assert_eq!(body["event_id"], message_id.as_str());
        assert_eq!(body["state_code"], 201);
        assert_eq!(body["params"], json!({}));
        assert_eq!(body["kind"], "sub_order");
        assert_eq!(body["data"]["sub_order_id"], id);
        assert!(body["data"]["update_time"].is_string(), "{body}");
        seen.push(id);
    }
    seen.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        metric(&rig, "weibo_relay_reconciled_events_total").await,
        6.0
    );
}

#[tokio::test]
async fn only_the_states_whose_pushes_were_lost_are_reconciled() {
    let rig = serve_reconciling(2, None).await;
    let ids = rig.create_orders(8).await;
    // The platform's pushes reach the relay for half of them.
    let (pushed, lost) = ids.split_at(4);
    for id in pushed {
        let data = json!({"sub_order_id": id, "state_code": 201}).to_string();
        rig.app
            .post_form(form(&signed_fields(APPID, SIGN_KEY, "2", &data, now())))
            .await
            .assert_success();
    }
    eventually(Duration::from_secs(20), "eight events", || async {
        rig.app.queue_depth().await >= 8
    })
    .await;
    sweeps(&rig, 2.0).await;
    let events = drain(&rig.app).await;
    assert_eq!(events.len(), 8, "{events:?}");
    let of = |source: &str| {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|(_, s, _)| s == source)
            .map(|(_, _, b)| b["sub_order_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(of("push"), pushed);
    assert_eq!(of("reconcile"), lost);
}

#[tokio::test]
async fn pages_are_followed_to_the_total_whatever_size_the_platform_caps_them_at() {
    let rig = serve_reconciling(1, Some(3)).await;
    rig.create_orders(10).await;
    eventually(Duration::from_secs(20), "ten states reconciled", || async {
        rig.app.queue_depth().await >= 10
    })
    .await;
    // Three more sweeps of both merchants (each counts once per merchant).
    sweeps(&rig, 6.0).await;
    assert_eq!(drain(&rig.app).await.len(), 10);
    // Each sweep asks for 100 rows a page, gets 3, and so asks for pages 1 to 4 of the ten
    // rows: never a fifth page, never one missed.
    let requests = rig
        .admin(reqwest::Method::GET, "/admin/requests", None)
        .await;
    let asked: Vec<(u64, String)> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == "retailerGetSubList" && r["params"]["appid"] == APPID)
        .map(|r| {
            let page = r["params"]["page"].as_str().unwrap().parse().unwrap();
            (page, r["params"]["page_size"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(asked.iter().all(|(_, size)| size == "100"), "{asked:?}");
    let pages: Vec<u64> = asked.iter().map(|(page, _)| *page).collect();
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for page in pages {
        if page == 1 || runs.is_empty() {
            runs.push(Vec::new());
        }
        runs.last_mut().unwrap().push(page);
    }
    // The last run may be in progress; the two before it began after the orders existed.
    assert!(runs.len() >= 3, "{runs:?}");
    let whole = &runs[runs.len() - 3..runs.len() - 1];
    assert!(whole.iter().all(|s| s == &[1, 2, 3, 4]), "{runs:?}");
}

#[tokio::test]
async fn a_failing_list_call_is_counted_and_the_next_sweep_recovers() {
    let rig = serve_reconciling(1, None).await;
    // Every list call fails for a while (HTTP 503), then the token is rejected once.
    rig.faults(json!({"error_rate": 1.0})).await;
    let ids = rig.create_orders(3).await;
    eventually(Duration::from_secs(20), "a failed sweep", || async {
        metric(
            &rig,
            "weibo_relay_reconcile_sweeps_total{outcome=\"failed\"}",
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(rig.app.queue_depth().await, 0);
    rig.faults(json!({})).await;
    rig.admin(
        reqwest::Method::POST,
        "/admin/tokens/revoke",
        Some(json!({"appid": APPID, "code": 21332})),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "three states reconciled",
        || async { rig.app.queue_depth().await >= 3 },
    )
    .await;
    assert_eq!(drain(&rig.app).await.len(), ids.len());
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 2);
    assert!(metric(&rig, "weibo_relay_reconcile_last_success_timestamp_seconds").await > 0.0);
}

#[tokio::test]
async fn two_serve_processes_reconcile_each_missing_state_once() {
    let mut settings = test_settings(AMQP_URL);
    settings.reconcile.interval_secs = 1.try_into().unwrap();
    settings.reconcile.settle_secs = 1.try_into().unwrap();
    let stage = Harness::builder().base(settings).platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    let one = stage.spawn(BIN, "serve", "info");
    let two = stage.spawn(BIN, "serve", "info");
    one.wait_ready().await;
    two.wait_ready().await;
    let ids = sandbox.create_orders(APPID, 12);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let depth = || async {
        weibo_relay::amqp::topology::queue_depth(&conn, &tap_queue(settings))
            .await
            .unwrap()
            .expect("the tap")
    };
    eventually(Duration::from_secs(20), "twelve states", || async {
        depth().await >= 12
    })
    .await;
    // Three more sweeps' worth of time, by the clock of the leader's interval.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        assert!(depth().await <= 12);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut states = BTreeMap::new();
    while let Some(got) = channel
        .basic_get(
            tap_queue(settings).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
        *states
            .entry(body["sub_order_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(states.len(), ids.len(), "{states:?}");
    assert!(states.values().all(|n| *n == 1), "{states:?}");
    let _ = conn.close(200, "done".into()).await;
    one.signal("TERM").await;
    two.signal("TERM").await;
}

/// The relay is down (nothing listens on its address) while the platform pushes and gives
/// up; then it comes up on that address: every lost state arrives once, from reconciliation,
/// and a change after that arrives once, from its push.
#[tokio::test]
async fn states_pushed_while_the_relay_was_down_arrive_once_when_it_is_back() {
    use std::sync::atomic::Ordering;
    use weibo_relay_tooling::sandbox::{PushSchedule, PushSender};
    // An address nobody listens on, until the relay does.
    let port = weibo_relay_tooling::stage::spare_port();
    let mut settings = test_settings(AMQP_URL);
    settings.http.bind = ([127, 0, 0, 1], port).into();
    settings.reconcile.interval_secs = 1.try_into().unwrap();
    settings.reconcile.settle_secs = 2.try_into().unwrap();
    let stage = Harness::builder().base(settings).platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    // 1 min, 5 min, 15 min scaled down to 6, 30 and 90 ms: the platform gives up at once.
    let sender = PushSender::start(
        sandbox,
        format!("http://127.0.0.1:{port}{}", settings.push.path),
        PushSchedule::scaled(0.0001),
    );
    let lost = sandbox.create_orders(APPID, 5);
    eventually(Duration::from_secs(20), "every push given up", || async {
        sender.stats().gave_up.load(Ordering::Relaxed) == 5
    })
    .await;
    assert_eq!(sender.stats().accepted.load(Ordering::Relaxed), 0);

    let relay = stage.spawn(BIN, "serve", "info");
    assert_eq!(relay.address, format!("127.0.0.1:{port}"));
    relay.wait_ready().await;
    let pushed = sandbox.create_orders(APPID, 2);
    eventually(Duration::from_secs(20), "two pushes accepted", || async {
        sender.stats().accepted.load(Ordering::Relaxed) == 2
    })
    .await;
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Seven states in all; then two sweeps' worth of time in which nothing more may come.
    let settled = std::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_since: Option<std::time::Instant> = None;
    while quiet_since.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        assert!(std::time::Instant::now() < settled, "{events:?}");
        match channel
            .basic_get(
                tap_queue(settings).as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(got) => {
                let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
                let source = match got
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-weibo-source"))
                {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => panic!("no x-weibo-source: {other:?}"),
                };
                events
                    .entry(body["sub_order_id"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(source);
                if events.values().map(Vec::len).sum::<usize>() >= 7 {
                    quiet_since.get_or_insert_with(std::time::Instant::now);
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in &lost {
        expected.insert(id.clone(), vec!["reconcile".into()]);
    }
    for id in &pushed {
        expected.insert(id.clone(), vec!["push".into()]);
    }
    assert_eq!(events, expected);
    let _ = conn.close(200, "done".into()).await;
    sender.stop().await;
    relay.signal("TERM").await;
}
