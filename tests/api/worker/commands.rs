//! Each command's way to the platform and to its outcome or the dead-letter queue.

use crate::support::rig::*;
use crate::support::*;
use lapin::types::AMQPValue;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn finish_and_close_reach_the_platform_signed_and_publish_their_outcomes() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(2).await;
    rig.send(finish(&ids[0])).await;
    rig.send(close(&ids[1], "out of stock")).await;

    let mut outcomes = rig.outcomes(2).await;
    outcomes.sort_by_key(|(_, body)| body["command"]["action"].as_str().unwrap().to_owned());
    assert_eq!(outcomes[0].0, "fulfilment.succeeded");
    assert_eq!(
        outcomes[0].1,
        json!({"command": close(&ids[1], "out of stock"), "attempts": 1, "code": 0, "msg": "success"})
    );
    assert_eq!(
        outcomes[1].1,
        json!({"command": finish(&ids[0]), "attempts": 1, "code": 0, "msg": "success"})
    );
    assert_eq!(rig.order_state(&ids[0]).await, 301);
    assert_eq!(rig.order_state(&ids[1]).await, 302);

    let requests = rig
        .admin(reqwest::Method::GET, "/admin/requests", None)
        .await;
    let close_call = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["endpoint"] == "retailerCloseSub")
        .expect("close call recorded");
    let params = close_call["params"].as_object().unwrap();
    let mut keys: Vec<&str> = params.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "appid",
            "reason",
            "sign",
            "sign_type",
            "sub_order_id",
            "timestamp"
        ]
    );
    assert_eq!(params["sign_type"], "md5");
    assert_eq!(params["reason"], "out of stock");
    let signed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert!(weibo_relay::signature::verify(
        signed.iter().copied(),
        SIGN_KEY,
        params["sign"].as_str().unwrap()
    ));
    assert!(rig
        .metric("weibo_relay_calls_total{action=\"finish\",outcome=\"succeeded\"}")
        .await
        .ends_with(" 1"));
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn idempotent_codes_succeed_and_permanent_codes_dead_letter_at_once() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(2).await;
    rig.send(finish(&ids[0])).await;
    rig.send(close(&ids[1], "no stock")).await;
    rig.outcomes(2).await;

    // Again: the platform says "already", which is success for the same action.
    rig.send(finish(&ids[0])).await;
    rig.send(close(&ids[1], "no stock")).await;
    let mut again = rig.outcomes(2).await;
    again.sort_by_key(|(_, b)| b["code"].as_i64());
    assert_eq!(again[0].0, "fulfilment.succeeded");
    assert_eq!(again[0].1["code"], 70102);
    assert_eq!(again[1].0, "fulfilment.succeeded");
    assert_eq!(again[1].1["code"], 70103);

    // The other action on a settled order, and an unknown order: permanent.
    rig.send(finish(&ids[1])).await;
    let (body, headers) = rig.next_dead().await;
    assert_eq!(body, finish(&ids[1]));
    assert_eq!(header(&headers, "x-last-code"), &text("70103"));
    assert_eq!(header(&headers, "x-attempts"), &AMQPValue::LongLongInt(1));
    let reason = header_text(&headers, "x-death-reason");
    assert!(reason.contains("platform refused"), "{reason}");
    let failed = rig.outcomes(1).await;
    assert_eq!(failed[0].0, "fulfilment.failed");
    assert_eq!(failed[0].1["code"], 70103);
    assert_eq!(failed[0].1["attempts"], 1);

    rig.send(finish("999999999")).await;
    let (_, headers) = rig.next_dead().await;
    assert_eq!(header(&headers, "x-last-code"), &text("70101"));
    assert_eq!(
        rig.counters().await["calls"]["retailerFinishSub"]["70101"],
        1
    );
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_until_the_platform_recovers() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(2).await;
    rig.faults(json!({"fail_next": 2})).await;
    rig.send(finish(&ids[0])).await;
    let ok = rig.outcomes(1).await;
    assert_eq!(ok[0].0, "fulfilment.succeeded");
    assert_eq!(ok[0].1["attempts"], 3);
    assert!(rig
        .metric("weibo_relay_retries_total")
        .await
        .ends_with(" 2"));

    rig.faults(json!({"rate_limit_next": 1, "rate_limit_code": 10024}))
        .await;
    rig.send(close(&ids[1], "x")).await;
    let ok = rig.outcomes(1).await;
    assert_eq!(ok[0].1["attempts"], 2);
    assert_eq!(
        rig.counters().await["calls"]["retailerCloseSub"]["10024"],
        1
    );
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn a_command_that_never_succeeds_is_dead_lettered_after_max_attempts_and_can_be_redriven() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(1).await;
    rig.faults(json!({"error_rate": 1.0})).await;
    rig.send(finish(&ids[0])).await;
    let failed = rig.outcomes(1).await;
    assert_eq!(failed[0].0, "fulfilment.failed");
    assert_eq!(failed[0].1["attempts"], 4);
    assert_eq!(
        rig.counters().await["calls"]["retailerFinishSub"]["http_503"],
        4
    );
    eventually(Duration::from_secs(5), "one dead command", || async {
        rig.dead_depth().await == 1
    })
    .await;

    let (settings, amqp) = (&rig.app.settings, &rig.app.settings.amqp);
    // The operator's view: `weibo-relay dlq list --json` with the relay's configuration.
    let config = ConfigFile::of(settings).unwrap();
    let dlq_list = |json: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["dlq", "list", "--config"]).arg(config.path());
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = dlq_list(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["attempts"], 4, "{stdout}");
    assert_eq!(line["last_code"], Value::Null, "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(line["body"].as_str().unwrap()).unwrap(),
        finish(&ids[0])
    );
    // The text form spells a missing code as the JSON does. (Listing puts the command back
    // when its connection closes: wait for it before listing again.)
    eventually(Duration::from_secs(5), "listed command back", || async {
        rig.dead_depth().await == 1
    })
    .await;
    let text = String::from_utf8(dlq_list(false).stdout).unwrap();
    assert!(
        text.trim().contains(" attempts=4 last_code=null reason="),
        "{text}"
    );

    // Listing returns what it read when its connection closes; that takes a moment.
    eventually(
        Duration::from_secs(5),
        "listed command back in .dead",
        || async { rig.dead_depth().await == 1 },
    )
    .await;
    let listed = weibo_relay::worker::dlq::list(amqp, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempts, 4);
    assert!(
        listed[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("gave up after 4 attempts"),
        "{listed:?}"
    );
    eventually(
        Duration::from_secs(5),
        "listing leaves it in place",
        || async { rig.dead_depth().await == 1 },
    )
    .await;

    rig.faults(json!({})).await;
    assert_eq!(
        weibo_relay::worker::dlq::redrive(amqp, 10)
            .await
            .unwrap()
            .moved,
        1
    );
    let ok = rig.outcomes(1).await;
    assert_eq!(ok[0].0, "fulfilment.succeeded");
    assert_eq!(ok[0].1["attempts"], 1, "redrive resets the attempt count");
    assert_eq!(rig.order_state(&ids[0]).await, 301);
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn poison_messages_and_unknown_merchants_are_dead_lettered_without_stopping_the_stream() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(1).await;
    rig.send_raw(b"\xff not json".to_vec()).await;
    rig.send(json!({"appid": "777", "sub_order_id": "1", "action": "finish"}))
        .await;
    rig.send(finish(&ids[0])).await;

    let ok = rig.outcomes(2).await;
    let keys: Vec<&str> = ok.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"fulfilment.succeeded") && keys.contains(&"fulfilment.failed"),
        "{ok:?}"
    );
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let (_, headers) = rig.next_dead().await;
        reasons.push(header_text(&headers, "x-death-reason"));
        assert_eq!(header(&headers, "x-attempts"), &AMQPValue::LongLongInt(0));
    }
    reasons.sort();
    assert!(reasons[0].contains("malformed command"), "{reasons:?}");
    assert!(reasons[1].contains("unknown appid 777"), "{reasons:?}");
    assert!(rig
        .metric("weibo_relay_dead_letters_total{cause=\"malformed\"}")
        .await
        .ends_with(" 1"));
}

#[tokio::test]
async fn an_invalidated_token_is_refreshed_once_for_many_concurrent_calls() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(20).await;
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 1);
    // Another issuer takes a token: ours is now invalid (21332).
    rig.admin(
        reqwest::Method::POST,
        "/admin/tokens/revoke",
        Some(json!({"appid": APPID, "code": 21332})),
    )
    .await;
    for id in &ids {
        rig.send(finish(id)).await;
    }
    let outcomes = rig.outcomes(20).await;
    assert!(
        outcomes.iter().all(|(k, _)| k == "fulfilment.succeeded"),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|(_, b)| b["attempts"] == 1),
        "compensation is not a new attempt"
    );
    assert_eq!(
        rig.counters().await["tokens_issued"][APPID],
        2,
        "exactly one refresh"
    );
    for id in &ids {
        assert_eq!(rig.order_state(id).await, 301);
    }
}
