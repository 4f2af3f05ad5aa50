//! The platform failing under the gateway: a write answered by a time-out is sent once and
//! answered 504; reads are retried; codes refused before acting are retried for writes too; a
//! rejected token is replaced once; a redirect is never followed; metrics and audit.

use serde_json::json;

use crate::support::gateway::*;
use crate::support::*;

fn stock() -> serde_json::Value {
    json!({"appid": APPID, "params": {"goods_id": "371965", "sku_id": "3924", "stock": 7}})
}

fn info() -> serde_json::Value {
    json!({"appid": APPID, "params": {"goods_id": "371965"}})
}

#[tokio::test]
async fn a_write_answered_by_a_time_out_is_sent_exactly_once_and_answered_504() {
    let gw = gateway_rig().await;
    gw.rig.faults(json!({"hang_next": 1})).await;
    let answer = gw.call(ALL_KEY, "goods/setGoodsStockSkuid", stock()).await;
    let body = answer.assert(504, "unknown");
    assert_eq!(body["relay"]["attempts"], 1);
    assert!(
        body["msg"].as_str().unwrap().contains("read back"),
        "{body}"
    );
    assert_eq!(gw.received("setGoodsStockSkuid"), 1);
}

#[tokio::test]
async fn a_read_answered_by_a_time_out_is_retried_within_the_deadline() {
    let gw = gateway_rig().await;
    gw.rig.faults(json!({"hang_next": 1})).await;
    let body = gw
        .call(ALL_KEY, "goods/getGoodsInfo", info())
        .await
        .assert(200, "success");
    assert_eq!(body["relay"]["attempts"], 2);
    assert_eq!(gw.received("getGoodsInfo"), 2);
}

#[tokio::test]
async fn codes_refused_before_acting_are_retried_for_writes_in_both_envelopes() {
    let gw = gateway_rig().await;
    for envelope in ["ecommerce", "weibo"] {
        gw.rig
            .faults(
                json!({"error_envelope": envelope, "rate_limit_next": 1, "system_error_next": 1}),
            )
            .await;
        let body = gw
            .call(ALL_KEY, "goods/setGoodsStockSkuid", stock())
            .await
            .assert(200, "success");
        assert_eq!(body["relay"]["attempts"], 3, "{envelope}: {body}");
    }
    assert_eq!(gw.received("setGoodsStockSkuid"), 6);
}

#[tokio::test]
async fn a_platform_that_keeps_refusing_gets_503_with_retry_after_within_the_deadline() {
    let gw = GatewayRig::on(Harness::builder().settings(|s| {
        with_gateway(s);
        s.gateway.deadline_ms = 1500.try_into().unwrap();
    }))
    .await;
    gw.rig.faults(json!({"rate_limit_next": 1000})).await;
    let started = std::time::Instant::now();
    let answer = gw.call(ALL_KEY, "goods/getGoodsInfo", info()).await;
    let body = answer.assert(503, "transient");
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(body["code"], 10023);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn a_permanent_refusal_is_422_with_the_platforms_code() {
    let gw = gateway_rig().await;
    gw.rig.faults(json!({"code_next": 1, "code": 40002})).await;
    let body = gw
        .call(ALL_KEY, "goods/setGoodsStockSkuid", stock())
        .await
        .assert(422, "permanent");
    assert_eq!(body["code"], 40002);
    assert_eq!(body["relay"]["attempts"], 1);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once_and_the_call_repeated() {
    let gw = gateway_rig().await;
    let before = gw.rig.counters().await["tokens_issued"][APPID]
        .as_u64()
        .unwrap();
    gw.rig
        .admin(
            reqwest::Method::POST,
            "/admin/tokens/revoke",
            Some(json!({"appid": APPID, "code": 21327})),
        )
        .await;
    let body = gw
        .call(ALL_KEY, "goods/setGoodsStockSkuid", stock())
        .await
        .assert(200, "success");
    assert_eq!(body["relay"]["attempts"], 2);
    let after = gw.rig.counters().await["tokens_issued"][APPID]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1, "one refresh");
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    let gw = gateway_rig().await;
    gw.rig.faults(json!({"redirect_next": 1})).await;
    let write = gw.call(ALL_KEY, "goods/setGoodsStockSkuid", stock()).await;
    write.assert(504, "unknown");
    // Named by its host only: the path or query of a redirect could carry anything.
    assert!(!write.text.contains("/steal"), "{}", write.text);
    assert!(write.headers.get("location").is_none());
    assert_eq!(gw.received("setGoodsStockSkuid"), 1);
    gw.rig.faults(json!({"redirect_next": 1})).await;
    gw.call(ALL_KEY, "goods/getGoodsInfo", info())
        .await
        .assert(200, "success");
    assert_eq!(
        gw.received("getGoodsInfo"),
        2,
        "a read retried, never the redirect's target"
    );
}

#[tokio::test]
async fn calls_are_counted_with_configured_labels_only() {
    let gw = gateway_rig().await;
    gw.call(ALL_KEY, "goods/getGoodsInfo", info())
        .await
        .assert(200, "success");
    gw.call(ALL_KEY, "goods/noSuchThing", info())
        .await
        .assert(404, "refused");
    gw.call("wrg_nobody", "goods/getGoodsInfo", info())
        .await
        .assert(401, "refused");
    let metrics = gw.rig.app.get("/metrics").await.body;
    for line in [
        r#"weibo_relay_gateway_calls_total{client="all",interface="goods/getGoodsInfo",outcome="success"} 1"#,
        r#"weibo_relay_gateway_calls_total{client="all",interface="other",outcome="refused"} 1"#,
        r#"weibo_relay_gateway_calls_total{client="other",interface="goods/getGoodsInfo",outcome="refused"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(!metrics.contains("noSuchThing") && !metrics.contains("nobody"));
}
