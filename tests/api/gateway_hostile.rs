//! The hostile inputs of issue 23, each refused before anything reaches the platform (the
//! sandbox counts every arrival), and the refusals in the contract's shape.

use reqwest::Method;
use serde_json::json;

use crate::support::gateway::*;
use crate::support::*;

const INFO: &str = "goods/getGoodsInfo";

fn info() -> serde_json::Value {
    json!({"appid": APPID, "params": {"goods_id": "371965"}})
}

#[tokio::test]
async fn bodies_that_are_not_json_too_large_or_too_many_are_refused_unsent() {
    let gw = gateway_rig().await;
    let post = || {
        gw.request(Method::POST, &format!("/v1/platform/{INFO}"))
            .bearer_auth(ALL_KEY)
    };
    let not_json = post()
        .header("content-type", "application/json")
        .body("not json");
    gw.send(not_json).await.assert(400, "refused");
    let text = post()
        .header("content-type", "text/plain")
        .body(info().to_string());
    gw.send(text).await.assert(415, "refused");
    let huge = format!(
        r#"{{"appid":"{APPID}","params":{{"x":"{}"}}}}"#,
        "a".repeat(300_000)
    );
    let large = post().header("content-type", "application/json").body(huge);
    gw.send(large).await.assert(413, "refused");
    let many: serde_json::Map<String, serde_json::Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!("v"))).collect();
    let answer = gw
        .call(ALL_KEY, INFO, json!({"appid": APPID, "params": many}))
        .await;
    answer.assert(400, "refused");
    assert!(
        answer.text.contains("more than 1000 params"),
        "{}",
        answer.text
    );
    for name in ["appid", "sign", "sign_type", "timestamp", "access_token"] {
        let body = json!({"appid": APPID, "params": {"goods_id": "1", name: "mine"}});
        let answer = gw.call(ALL_KEY, INFO, body).await;
        answer.assert(400, "refused");
        assert!(
            answer.text.contains("relay's own"),
            "{name}: {}",
            answer.text
        );
    }
    assert_eq!(gw.received("getGoodsInfo"), 0);
}

#[tokio::test]
async fn path_tricks_and_unknown_interfaces_are_404_and_reach_nothing() {
    let gw = gateway_rig().await;
    let body = info().to_string();
    for path in [
        "/v1/platform/goods/../order/retailerFinishSub",
        "/v1/platform/goods%2F..%2Forder/retailerFinishSub",
        "/v1/platform/goods%2fgetGoodsInfo/x",
        "/v1/platform/..%2F..%2Fadmin/faults",
        "/v1/platform/nogroup/getGoodsInfo",
        "/v1/platform/goods/getGoodsInfo%00",
        "/v1/platform/goods/noSuchThing",
        "/v1/platform/goods",
        "/admin/faults",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALL_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_http(&gw.url, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    let get = gw
        .request(Method::GET, &format!("/v1/platform/{INFO}"))
        .bearer_auth(ALL_KEY);
    gw.send(get).await.assert(404, "refused");
    let counters = gw.rig.counters().await;
    assert_eq!(counters["received"], json!({}), "{counters}");
}

#[tokio::test]
async fn a_key_anywhere_but_the_authorization_header_is_no_key() {
    let gw = gateway_rig().await;
    for query in [
        format!("?key={ALL_KEY}"),
        format!("?access_token={ALL_KEY}"),
        format!("?authorization=Bearer%20{ALL_KEY}"),
    ] {
        let request = gw
            .request(Method::POST, &format!("/v1/platform/{INFO}{query}"))
            .json(&info());
        let answer = gw.send(request).await;
        answer.assert(401, "refused");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
    }
    gw.call("wrg_not-a-key", INFO, info())
        .await
        .assert(401, "refused");
    let basic = gw
        .request(Method::POST, &format!("/v1/platform/{INFO}"))
        .basic_auth("all", Some(ALL_KEY))
        .json(&info());
    gw.send(basic).await.assert(401, "refused");
    // With the key where it belongs, a query string is still refused: parameters go in the body.
    let both = gw
        .request(Method::POST, &format!("/v1/platform/{INFO}?goods_id=1"))
        .bearer_auth(ALL_KEY)
        .json(&info());
    gw.send(both).await.assert(400, "refused");
    assert_eq!(gw.received("getGoodsInfo"), 0);
}

#[tokio::test]
async fn one_clients_flood_gets_429_for_it_and_not_for_another() {
    let gw = gateway_rig().await;
    let mut refused = 0;
    for _ in 0..20 {
        let answer = gw.call(STOCK_KEY, INFO, info()).await;
        if answer.status == 429 {
            answer.assert(429, "refused");
            assert_eq!(answer.headers["retry-after"], "1");
            refused += 1;
        } else {
            answer.assert(200, "success");
        }
    }
    assert!(
        refused >= 10,
        "a burst of 5 a second, then 429: {refused} refused"
    );
    gw.call(ALL_KEY, INFO, info()).await.assert(200, "success");
    assert_eq!(gw.received("getGoodsInfo"), 20 - refused + 1);
}

#[tokio::test]
async fn a_body_without_end_is_cut_off() {
    let gw = gateway_rig().await;
    let request = format!(
        "POST /v1/platform/{INFO} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALL_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"appid\":"
    );
    let started = std::time::Instant::now();
    let answer = raw_http(&gw.url, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(gw.received("getGoodsInfo"), 0);
}
