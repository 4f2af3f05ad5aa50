//! The token never leaves the relay through the gateway: the shipped binary, logging at debug,
//! serves successes, a rejected token, a redirect and hostile requests, and no answer, header
//! or log line carries a token, a client key or a sign key; each write leaves one audit line.

use serde_json::{json, Value};

use crate::support::gateway::*;
use crate::support::*;

#[tokio::test]
async fn no_answer_header_or_log_line_carries_a_secret_and_each_write_is_audited() {
    let stage = Harness::builder()
        .platform()
        .settings(with_gateway)
        .stage()
        .await;
    let mut relay = stage.spawn(BIN, "worker", "debug");
    relay.wait_ready().await;
    let gateway = relay
        .history()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "platform gateway listening")
        .and_then(|e| e["gateway_address"].as_str().map(str::to_owned))
        .expect("the gateway's address is logged");
    let sandbox = stage.sandbox().base_url();
    let http = reqwest::Client::new();
    let admin = |path: &str, body: Value| http.post(format!("{sandbox}{path}")).json(&body).send();
    let call = |key: &str, interface: &str, body: Value| {
        http.post(format!("http://{gateway}/v1/platform/{interface}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let stock = json!({"appid": APPID, "params": {"goods_id": "1", "sku_id": "2", "stock": 3}});
    let mut answers = Vec::new();
    let keep = |r: reqwest::Response| async move {
        let head = format!("{:?}", r.headers());
        format!("{head}\n{}", r.text().await.unwrap())
    };
    answers.push(
        keep(
            call(ALL_KEY, "goods/setGoodsStockSkuid", stock.clone())
                .await
                .unwrap(),
        )
        .await,
    );
    admin(
        "/admin/tokens/revoke",
        json!({"appid": APPID, "code": 21332}),
    )
    .await
    .unwrap();
    answers.push(
        keep(
            call(ALL_KEY, "goods/setGoodsStockSkuid", stock.clone())
                .await
                .unwrap(),
        )
        .await,
    );
    admin("/admin/faults", json!({"redirect_next": 1}))
        .await
        .unwrap();
    answers.push(
        keep(
            call(ALL_KEY, "goods/setGoodsStockSkuid", stock.clone())
                .await
                .unwrap(),
        )
        .await,
    );
    let hostile = json!({"appid": APPID, "params": {"access_token": "x"}});
    answers.push(keep(call(ALL_KEY, "goods/getGoodsInfo", hostile).await.unwrap()).await);
    let in_query = http
        .post(format!(
            "http://{gateway}/v1/platform/goods/getGoodsInfo?key={ALL_KEY}"
        ))
        .json(&stock)
        .send()
        .await
        .unwrap();
    answers.push(keep(in_query).await);
    assert!(
        answers[0].contains("\"success\"") && answers[1].contains("\"success\""),
        "{answers:?}"
    );

    // Every line the process wrote, once its audit lines are out.
    let mut lines = Vec::new();
    eventually(
        std::time::Duration::from_secs(5),
        "three audit lines",
        || {
            lines.extend(relay.logged());
            let audited = lines.iter().filter(|l| l.contains("gateway write")).count();
            async move { audited == 3 }
        },
    )
    .await;
    lines.extend(relay.history().iter().cloned());
    let tokens = stage.sandbox().tokens();
    assert!(tokens.len() >= 2, "a token and its replacement: {tokens:?}");
    let secrets: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .chain([ALL_KEY, STOCK_KEY, SIGN_KEY, OTHER_SIGN_KEY])
        .collect();
    for secret in &secrets {
        for text in answers.iter().chain(&lines) {
            assert!(!text.contains(secret), "a secret in: {text}");
        }
    }
    let audit: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "gateway write")
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    let outcomes: Vec<&str> = audit
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "success", "unknown"]);
    for entry in &audit {
        assert_eq!(entry["target"], "weibo_relay::gateway::audit");
        assert_eq!(entry["client"], "all");
        assert_eq!(entry["interface"], "goods/setGoodsStockSkuid");
        assert_eq!(entry["appid"], APPID);
        assert_eq!(
            entry["trace_id"].as_str().map(str::len),
            Some(32),
            "{entry}"
        );
    }
    assert_eq!(audit[0]["code"], 0);
    drop(relay);
    stage.stop().await;
}
