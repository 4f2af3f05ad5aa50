//! Order events, pushed or reconciled, are what the schemas describe.

use super::support::*;
use crate::support::*;
use lapin::options::BasicGetOptions;
use serde_json::{json, Map, Value};
use std::time::Duration;
use weibo_relay::startup::Roles;

#[tokio::test]
async fn form_json_and_other_type_pushes_publish_events_the_schemas_describe() {
    let app = Harness::builder().start().await;

    // A form push continuing the caller's trace.
    let (body, id) = valid_form_push();
    let answer = app
        .http
        .post(app.push_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("traceparent", PARENT)
        .header("tracestate", STATE)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let event = app.next_event().await.delivery;
    assert_eq!(event.routing_key.as_str(), "order.sub_order.201");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["sub_order_id"], id.as_str());
    let headers = headers_json(&event.properties);
    assert_eq!(header_str(&headers, "x-weibo-source"), "push");
    assert_eq!(header_str(&headers, "tracestate"), STATE);

    // A JSON push, numbers as numbers, no trace headers: a new trace and no tracestate.
    let data = order_data(&unique_order_id(), 201);
    let fields = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    let mut object = Map::new();
    for (k, v) in &fields {
        let value = match k.as_str() {
            "appid" | "type" | "timestamp" => json!(v.parse::<i64>().unwrap()),
            _ => json!(v),
        };
        object.insert(k.clone(), value);
    }
    app.post_push("application/json", Value::Object(object).to_string())
        .await
        .assert_success();
    let event = app.next_event().await.delivery;
    assert_message("event", "event.json", &event.properties, &event.data);
    let headers = headers_json(&event.properties);
    assert!(headers.get("tracestate").is_none(), "{headers}");

    // Another business type: kind type_7, no sub order, state none.
    let fields = signed_fields(APPID, SIGN_KEY, "7", r#"{"goods_id":"371965"}"#, now());
    app.post_form(form(&fields)).await.assert_success();
    let event = app.next_event().await.delivery;
    assert_eq!(event.routing_key.as_str(), "order.type_7.none");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["kind"], "type_7");
    assert_eq!(envelope["sub_order_id"], Value::Null);
}

#[tokio::test]
async fn a_reconciled_event_is_what_the_schemas_describe() {
    // A serve whose keeper sweeps every second; no push sender, so the order's only way to
    // the queue is reconciliation.
    let rig = Harness::builder()
        .roles(Roles::Serve)
        .settings(|s| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 1.try_into().unwrap();
            s.reconcile.lookback_secs = 3600.try_into().unwrap();
        })
        .rig()
        .await;
    let id = rig.create_orders(1).await.remove(0);
    let queue = tap_queue(&rig.app.settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let event = loop {
        let got = rig
            .app
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if let Some(got) = got {
            break got.delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reconciled in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event.routing_key.as_str(), "order.sub_order.201");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["sub_order_id"], id.as_str());
    assert_eq!(envelope["params"], json!({}));
    let headers = headers_json(&event.properties);
    assert_eq!(header_str(&headers, "x-weibo-source"), "reconcile");
}
