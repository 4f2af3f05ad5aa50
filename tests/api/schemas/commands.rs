//! Outcomes, delayed and dead commands are what the schemas describe.

use super::support::*;
use crate::support::contract::*;
use crate::support::rig::{close, finish, text};
use crate::support::*;
use lapin::BasicProperties;
use serde_json::{json, Value};

#[tokio::test]
async fn succeeded_and_failed_outcomes_are_what_the_schemas_describe() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(2).await;
    // Succeeded: a traced finish, and an untraced close.
    rig.send_with_headers(finish(&ids[0]).to_string().into_bytes(), traced())
        .await;
    rig.send(close(&ids[1], "out of stock")).await;
    for outcome in rig.outcome_messages(2).await {
        assert_eq!(outcome.routing_key.as_str(), "fulfilment.succeeded");
        let body = assert_outcome(&outcome);
        assert_eq!(body["code"], 0);
        let headers = headers_json(&outcome.properties);
        let was_traced = body["command"]["action"] == "finish";
        assert_eq!(headers.get("tracestate").is_some(), was_traced, "{headers}");
    }

    // Failed: a permanent code (finish on a closed order: 70103), and an unknown appid (no
    // call, code null).
    rig.send_with_headers(finish(&ids[1]).to_string().into_bytes(), traced())
        .await;
    let failed = rig.outcome_messages(1).await.remove(0);
    assert_eq!(failed.routing_key.as_str(), "fulfilment.failed");
    let body = assert_outcome(&failed);
    assert_eq!(body["code"], 70103);
    rig.send(json!({"appid": "777", "sub_order_id": "1", "action": "finish"}))
        .await;
    let failed = rig.outcome_messages(1).await.remove(0);
    assert_eq!(failed.routing_key.as_str(), "fulfilment.failed");
    let body = assert_outcome(&failed);
    assert_eq!(
        (&body["code"], &body["attempts"]),
        (&Value::Null, &json!(0))
    );
}

#[tokio::test]
async fn dead_commands_are_what_the_schemas_describe() {
    let rig = Harness::builder().rig().await;
    let dead = weibo_relay::amqp::Names::new(&rig.app.settings.amqp)
        .dead()
        .to_owned();

    // Poison: not JSON, with a producer's own headers and properties. Only a well-formed
    // trace context travels on; the producer's other header does not.
    let mut headers = traced();
    headers.insert("x-producer".into(), text("mine"));
    rig.app
        .channel
        .basic_publish(
            "".into(),
            rig.app.settings.amqp.fulfilment_queue.as_str().into(),
            Default::default(),
            b"\xff not json",
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id("poison-1".into())
                .with_app_id("shop".into())
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let poison = take(&rig, &dead).await;
    assert_message(
        "dead-command",
        "dead-command.json",
        &poison.properties,
        &poison.data,
    );
    let headers = headers_json(&poison.properties);
    assert_eq!(headers["x-attempts"], 0);
    assert!(headers.get("x-last-code").is_none(), "{headers}");
    assert_eq!(header_str(&headers, "traceparent"), PARENT);

    // A permanent platform code: an unknown order (70101), a command that is a command.
    rig.send(finish("999999999")).await;
    let refused = take(&rig, &dead).await;
    let body = assert_message(
        "dead-command",
        "dead-command.json",
        &refused.properties,
        &refused.data,
    );
    assert_schema("command.json", &body);
    let headers = headers_json(&refused.properties);
    assert_eq!(header_str(&headers, "x-last-code"), "70101");
    assert_eq!(headers["x-attempts"], 1);
}

#[tokio::test]
async fn a_command_waiting_in_a_delay_queue_is_what_the_schemas_describe() {
    // A long delay, so the command is still there to be read.
    let rig = Harness::builder()
        .settings(|s| {
            s.weibo.retry_base_ms = 30_000.try_into().unwrap();
            s.weibo.retry_max_ms = 30_000.try_into().unwrap();
        })
        .rig()
        .await;
    let id = rig.create_orders(1).await.remove(0);
    rig.faults(json!({"system_error_next": 1})).await;
    rig.send_with_headers(finish(&id).to_string().into_bytes(), traced())
        .await;
    let queue = format!("{}.retry.30000ms", rig.app.settings.amqp.fulfilment_queue);
    let waiting = take(&rig, &queue).await;
    let body = assert_message(
        "retry-command",
        "dead-command.json",
        &waiting.properties,
        &waiting.data,
    );
    assert_schema("command.json", &body);
    let headers = headers_json(&waiting.properties);
    assert_eq!(headers["x-attempts"], 1);
    assert_eq!(header_str(&headers, "x-last-code"), "10002");
}
