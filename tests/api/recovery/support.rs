//! A reconciling worker, and reading, pushing and expiring what a recovery test checks.

use crate::support::rig::WorkerRig;
use crate::support::*;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weibo_relay::startup::Roles;

/// A `serve` whose sweeper runs every second and leaves the last `settle` seconds to pushes.
pub(crate) async fn serve_reconciling(settle: u64, list_page_cap: Option<u32>) -> WorkerRig {
    let faults = weibo_relay_tooling::sandbox::Faults {
        list_page_cap,
        ..Default::default()
    };
    Harness::builder()
        .roles(Roles::Serve)
        .faults(faults)
        .settings(move |s| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = settle.try_into().unwrap();
            s.reconcile.lookback_secs = 3600.try_into().unwrap();
        })
        .rig()
        .await
}

/// One event taken from a queue: (message_id, source header, body).
pub(crate) async fn take(app: &TestApp, queue: &str) -> Option<(String, String, Value)> {
    let got = app
        .channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()?;
    let p = &got.delivery.properties;
    let source = match p
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-weibo-source"))
    {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("no x-weibo-source: {other:?}"),
    };
    Some((
        p.message_id().as_ref().unwrap().to_string(),
        source,
        serde_json::from_slice(&got.delivery.data).unwrap(),
    ))
}

/// Every event in the events queue now.
pub(crate) async fn drain(app: &TestApp) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while let Some(event) = take(app, &tap_queue(&app.settings)).await {
        out.push(event);
    }
    out
}

pub(crate) fn reconciled_id(sub_order_id: &str, state: &str) -> String {
    hex::encode(
        &Sha256::digest(format!("{APPID}\nreconcile\n{sub_order_id}\n{state}").as_bytes())[..16],
    )
}

pub(crate) async fn metric(rig: &WorkerRig, name: &str) -> f64 {
    rig.metric(name)
        .await
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `n` more sweeps succeeded than now.
pub(crate) async fn sweeps(rig: &WorkerRig, n: f64) {
    let name = "weibo_relay_reconcile_sweeps_total{outcome=\"succeeded\"}";
    let before = metric(rig, name).await;
    eventually(Duration::from_secs(20), "sweeps", || async {
        metric(rig, name).await >= before + n
    })
    .await;
}

/// Waits until the clock is in a later second than `t`: events on either side have
/// `timestamp` properties on either side of it.
pub(crate) async fn next_second(t: SystemTime) -> SystemTime {
    let second = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    while second(SystemTime::now()) <= second(t) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    UNIX_EPOCH + Duration::from_secs(second(t) + 1)
}

/// Declares a queue to replay into, deleted when the returned guard goes (and by the broker
/// a minute after its last use, should the test process die).
#[must_use = "the queue is deleted when this is dropped"]
pub(crate) async fn declare_expiring(app: &TestApp, queue: &str) -> Teardown {
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    app.channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    queues_deleted_after(&[queue])
}

pub(crate) async fn push(app: &TestApp, appid: &str, key: &str, sub_order_id: &str, state: i64) {
    let data = order_data(sub_order_id, state);
    app.post_form(form(&signed_fields(appid, key, "2", &data, now())))
        .await
        .assert_success();
}
