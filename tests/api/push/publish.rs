//! What a push publishes, once, and the answer the stored push gets.

use super::support::*;
use crate::support::*;
use lapin::types::{AMQPValue, ShortString};
use serde_json::{json, Value};

#[tokio::test]
async fn a_signed_form_push_is_published_with_the_contract_envelope() {
    let app = Harness::builder().start().await;
    let id = unique_order_id();
    let data = order_data(&id, 201);
    let ts = now();
    let fields = signed_fields(APPID, SIGN_KEY, "2", &data, ts);

    app.post_form(form(&fields)).await.assert_success();

    let msg = app.next_event().await;
    let event_id = expected_event_id(APPID, "2", &data);
    assert_eq!(
        msg.delivery.exchange.as_str(),
        app.settings.amqp.events_exchange
    );
    assert_eq!(msg.delivery.routing_key.as_str(), "order.sub_order.201");
    let p = &msg.delivery.properties;
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(
        p.content_type(),
        &Some(ShortString::from("application/json"))
    );
    assert_eq!(p.message_id(), &Some(ShortString::from(event_id.as_str())));
    assert_eq!(p.kind(), &Some(ShortString::from("sub_order")));
    let headers = p.headers().as_ref().expect("headers");
    assert_eq!(
        headers.inner().get("x-weibo-appid"),
        Some(&AMQPValue::LongString(APPID.into()))
    );

    let body: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    let received_at = body["received_at"].as_str().expect("received_at");
    let received = humantime::parse_rfc3339(received_at).expect("RFC 3339 UTC");
    assert!(
        received_at.ends_with('Z') && received_at.len() == 20,
        "{received_at}"
    );
    assert!(received.elapsed().unwrap().as_secs() < 60);
    let params: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let expected = json!({
        "event_id": event_id,
        "appid": APPID,
        "type": 2,
        "kind": "sub_order",
        "sub_order_id": id,
        "state_code": 201,
        "timestamp": ts,
        "received_at": received_at,
        "params": params,
        "data": serde_json::from_str::<Value>(&data).unwrap(),
    });
    assert_eq!(body, expected);
    assert_eq!(app.queue_depth().await, 0);
}

#[tokio::test]
async fn a_json_push_keeps_number_text_and_other_types_are_passed_on() {
    let app = Harness::builder().start().await;
    let data = r#"{"notice":"refund","sub_order_id":4200000001}"#;
    let ts = now();
    let pairs = [
        ("appid", APPID),
        ("type", "5"),
        ("data", data),
        ("sign_type", "md5"),
    ];
    let ts_text = ts.to_string();
    let mut signed: Vec<(&str, &str)> = pairs.to_vec();
    signed.push(("timestamp", &ts_text));
    let sign = weibo_relay::signature::sign(signed.iter().copied(), SIGN_KEY);
    let body = json!({
        "appid": APPID, "type": 5, "data": data, "timestamp": ts,
        "sign_type": "md5", "sign": sign.to_uppercase(),
    });

    app.post_push("application/json", body.to_string())
        .await
        .assert_success();

    let msg = app.next_event().await;
    assert_eq!(msg.delivery.routing_key.as_str(), "order.type_5.none");
    assert_eq!(
        msg.delivery.properties.kind(),
        &Some(ShortString::from("type_5"))
    );
    let env: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(env["kind"], "type_5");
    assert_eq!(env["type"], 5);
    assert_eq!(env["sub_order_id"], "4200000001");
    assert_eq!(env["state_code"], Value::Null);
    assert_eq!(env["params"]["type"], "5");
    assert_eq!(env["params"]["timestamp"], ts.to_string());
    assert_eq!(env["event_id"], expected_event_id(APPID, "5", data));
}

#[tokio::test]
async fn a_redelivery_with_fresh_timestamp_nonce_and_sign_is_not_published_twice() {
    let app = Harness::builder().start().await;
    let data = order_data(&unique_order_id(), 201);
    let first = signed_fields(APPID, SIGN_KEY, "2", &data, now() - 60);
    let again = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    assert_ne!(
        first.last(),
        again.last(),
        "the redelivery has another sign"
    );

    app.post_form(form(&first)).await.assert_success();
    app.post_form(form(&again)).await.assert_success();
    app.post_form(form(&first)).await.assert_success();

    // The next state of the same order is a new event.
    let next = order_data(&unique_order_id(), 301);
    app.post_form(form(&signed_fields(APPID, SIGN_KEY, "2", &next, now())))
        .await
        .assert_success();

    eventually(
        std::time::Duration::from_secs(5),
        "two events queued",
        || async { app.queue_depth().await == 2 },
    )
    .await;
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"duplicate\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_publish_confirm_seconds_count 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unroutable_event_is_a_503_not_a_success() {
    let app = Harness::builder().start().await;
    let amqp = &app.settings.amqp;
    // Nothing bound for order.#: neither the test's tap nor the event log.
    let bound = [
        tap_queue(&app.settings),
        weibo_relay::amqp::Names::new(amqp).event_log().to_owned(),
    ];
    for queue in &bound {
        app.channel
            .queue_unbind(
                queue.as_str().into(),
                amqp.events_exchange.as_str().into(),
                "order.#".into(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let (body, _) = valid_form_push();
    app.post_form(body.clone()).await.assert_refused(503, 50300);

    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"broker_unavailable\"} 1"),
        "{metrics}"
    );
    // Not remembered as stored: once routable again the platform's retry is published.
    for queue in &bound {
        app.channel
            .queue_bind(
                queue.as_str().into(),
                amqp.events_exchange.as_str().into(),
                "order.#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    app.post_form(body).await.assert_success();
    eventually(
        std::time::Duration::from_secs(5),
        "retry queued",
        || async { app.queue_depth().await == 1 },
    )
    .await;
}

#[tokio::test]
async fn the_answer_to_a_stored_push_is_configuration() {
    let mut settings = test_settings(AMQP_URL);
    settings.push.success_body = "success".into();
    settings.push.success_content_type = "text/plain; charset=utf-8".into();
    let app = Harness::builder().base(settings).start().await;
    let (body, _) = valid_form_push();
    let answer = app
        .http
        .post(app.push_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer.text().await.unwrap(), "success");
    app.next_event().await;
    // Refusals keep the contract's JSON.
    app.post_form("appid=1".into())
        .await
        .assert_refused(400, 40002);
}
