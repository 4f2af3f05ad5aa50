//! The durable door: `"action":"call"` fulfilment commands through the worker, with its
//! retries, dead letters and outcomes, the outcome carrying the platform's `data`.

use serde_json::json;

use crate::support::rig::*;
use crate::support::*;

fn call(interface: &str, params: serde_json::Value, id: &str) -> serde_json::Value {
    json!({"appid": APPID, "action": "call", "interface": interface, "params": params, "id": id})
}

#[tokio::test]
async fn a_call_command_succeeds_with_the_platforms_data_in_its_outcome() {
    let rig = Harness::builder().rig().await;
    let stock = json!({"goods_id": "371965", "sku_id": "3924", "stock": 12});
    rig.send(call("goods/setGoodsStockSkuid", stock.clone(), "sync-1"))
        .await;
    let (key, body) = &rig.outcomes(1).await[0];
    assert_eq!(key, "fulfilment.succeeded", "{body}");
    assert_eq!(
        body["command"],
        call("goods/setGoodsStockSkuid", stock, "sync-1")
    );
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["code"], 0);
    assert_eq!(body["data"]["stock"], 12, "{body}");
    rig.send(call(
        "goods/getGoodsInfo",
        json!({"goods_id": "371965"}),
        "read-1",
    ))
    .await;
    let (key, body) = &rig.outcomes(1).await[0];
    assert_eq!(key, "fulfilment.succeeded", "{body}");
    assert_eq!(body["data"]["skus"][0]["stock"], 12, "{body}");
    assert_eq!(rig.sandbox.received("setGoodsStockSkuid"), 1);
}

#[tokio::test]
async fn a_call_refused_before_acting_is_retried_from_the_delay_queue() {
    let rig = Harness::builder().rig().await;
    rig.faults(json!({"rate_limit_next": 2})).await;
    rig.send(call(
        "goods/setGoodsPricePin",
        json!({"pin": "P", "price": "1"}),
        "p-1",
    ))
    .await;
    let (key, body) = &rig.outcomes(1).await[0];
    assert_eq!(key, "fulfilment.succeeded", "{body}");
    assert_eq!(body["attempts"], 3, "{body}");
    assert_eq!(rig.sandbox.received("setGoodsPricePin"), 3);
}

#[tokio::test]
async fn unknown_and_refused_interfaces_are_dead_lettered_with_their_reason_unsent() {
    let rig = Harness::builder()
        .settings(|s| {
            let row = s.gateway.interfaces.get_mut("goods/delTpl").unwrap();
            row.commands = false;
        })
        .rig()
        .await;
    for (interface, why) in [
        ("goods/noSuchThing", "not in the catalogue"),
        ("goods/delTpl", "refused to commands"),
    ] {
        rig.send(call(interface, json!({"tpl_id": "1"}), "x")).await;
        let (body, headers) = rig.next_dead().await;
        assert_eq!(body["interface"], interface);
        let reason = header_text(&headers, "x-death-reason");
        assert!(reason.contains(why), "{reason}");
        let (key, outcome) = &rig.outcomes(1).await[0];
        assert_eq!(key, "fulfilment.failed", "{outcome}");
        assert_eq!(outcome["command"]["id"], "x");
    }
    assert_eq!(rig.sandbox.received("delTpl"), 0);
    assert_eq!(rig.sandbox.received("noSuchThing"), 0);
}

#[tokio::test]
async fn a_call_write_answered_by_a_time_out_is_never_sent_again() {
    let rig = Harness::builder().rig().await;
    rig.faults(json!({"hang_next": 1})).await;
    rig.send(call(
        "goods/setGoodsStockPin",
        json!({"pin": "P", "stock": 1}),
        "s-1",
    ))
    .await;
    let (body, headers) = rig.next_dead().await;
    assert_eq!(body["id"], "s-1");
    let reason = header_text(&headers, "x-death-reason");
    assert!(reason.contains("fate unknown"), "{reason}");
    let (key, _) = &rig.outcomes(1).await[0];
    assert_eq!(key, "fulfilment.failed");
    assert_eq!(rig.sandbox.received("setGoodsStockPin"), 1);
}

#[tokio::test]
async fn call_commands_their_outcomes_and_dead_letters_are_what_the_schemas_describe() {
    use crate::schemas::support::{assert_message, assert_outcome, take};
    use crate::support::contract::assert_schema;
    let rig = Harness::builder().rig().await;
    let command = call(
        "goods/setGoodsStockSkuid",
        json!({"goods_id": "1", "sku_id": "2", "stock": 3}),
        "s-1",
    );
    assert_schema("command.json", &command);
    rig.send(command).await;
    let succeeded = rig.outcome_messages(1).await.remove(0);
    assert_eq!(succeeded.routing_key.as_str(), "fulfilment.succeeded");
    assert_eq!(assert_outcome(&succeeded)["data"]["stock"], 3);
    for (command, why) in [
        (
            call("goods/noSuchThing", json!({}), "n-1"),
            "not in the catalogue",
        ),
        (
            call(
                "goods/setGoodsStockPin",
                json!({"pin": "P", "stock": 1}),
                "h-1",
            ),
            "fate unknown",
        ),
    ] {
        if why == "fate unknown" {
            rig.faults(json!({"hang_next": 1})).await;
        }
        rig.send(command).await;
        let failed = rig.outcome_messages(1).await.remove(0);
        assert_eq!(failed.routing_key.as_str(), "fulfilment.failed");
        let body = assert_outcome(&failed);
        assert!(body["msg"].as_str().unwrap().contains(why), "{body}");
        let dead_queue = weibo_relay::amqp::Names::new(&rig.app.settings.amqp)
            .dead()
            .to_owned();
        let dead = take(&rig, &dead_queue).await;
        let body = assert_message(
            "dead-command",
            "dead-command.json",
            &dead.properties,
            &dead.data,
        );
        assert_schema("command.json", &body);
    }
}
