//! The worker against the sandbox answering as Weibo's real API gateway does: token, rate and
//! system errors in the gateway's envelope at HTTP 400/403, codes as strings.

use serde_json::json;
use weibo_relay::settings::Settings;
use weibo_relay_tooling::sandbox::{ErrorEnvelope, Faults};

use crate::support::rig::*;
use crate::support::*;

fn gateway() -> Harness {
    Harness::builder().faults(Faults {
        error_envelope: ErrorEnvelope::Weibo,
        ..Faults::default()
    })
}

#[tokio::test]
async fn rate_limits_and_service_unavailable_are_retried_until_success() {
    let rig = gateway().rig().await;
    let ids = rig.create_orders(2).await;
    rig.faults(json!({"error_envelope": "weibo", "rate_limit_next": 2, "rate_limit_code": 10023}))
        .await;
    rig.send(finish(&ids[0])).await;
    let first = rig.outcomes(1).await;
    rig.faults(json!({"error_envelope": "weibo", "system_error_next": 2}))
        .await;
    rig.send(finish(&ids[1])).await;
    let second = rig.outcomes(1).await;
    for (outcomes, id) in [(first, &ids[0]), (second, &ids[1])] {
        let (key, body) = &outcomes[0];
        assert_eq!(key, "fulfilment.succeeded", "{body}");
        assert_eq!(
            body["attempts"], 3,
            "two refused attempts, then success: {body}"
        );
        assert_eq!(rig.order_state(id).await, 301);
    }
    let calls = &rig.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls, &json!({"0": 2, "10023": 2, "10002": 2}), "{calls}");
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn an_expired_token_answered_by_the_gateway_is_refreshed_once_for_many_calls() {
    let rig = gateway().rig().await;
    let ids = rig.create_orders(20).await;
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 1);
    // 21327 expired_token, at HTTP 400, "error_code":"21327" as a string.
    rig.admin(
        reqwest::Method::POST,
        "/admin/tokens/revoke",
        Some(json!({"appid": APPID, "code": 21327})),
    )
    .await;
    for id in &ids {
        rig.send(finish(id)).await;
    }
    let outcomes = rig.outcomes(20).await;
    assert!(
        outcomes
            .iter()
            .all(|(k, b)| k == "fulfilment.succeeded" && b["attempts"] == 1),
        "{outcomes:?}"
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

#[tokio::test]
async fn codes_mean_what_the_configuration_says() {
    let rig = gateway()
        .settings(|s| {
            // The defaults, one code added to each of two lists.
            let table = "[weibo.codes]\nalready_finished = [70102, 88001]\n\
                transient = [10001, 10002, 10003, 10022, 10023, 10024, 21331, 88002]\n";
            s.weibo.codes = Settings::from_toml(table).unwrap().weibo.codes;
        })
        .rig()
        .await;
    let ids = rig.create_orders(3).await;
    // A code configured as "already finished": success, without the platform doing anything.
    rig.faults(json!({"code_next": 1, "code": 88001})).await;
    rig.send(finish(&ids[0])).await;
    let (key, body) = rig.outcomes(1).await.remove(0);
    assert_eq!(
        (key.as_str(), &body["code"]),
        ("fulfilment.succeeded", &json!(88001))
    );
    assert_eq!(rig.order_state(&ids[0]).await, 201);
    // A code configured as transient: retried, then success.
    rig.faults(json!({"code_next": 1, "code": 88002})).await;
    rig.send(finish(&ids[1])).await;
    let (key, body) = rig.outcomes(1).await.remove(0);
    assert_eq!(key, "fulfilment.succeeded", "{body}");
    assert_eq!((&body["code"], &body["attempts"]), (&json!(0), &json!(2)));
    // A code in no list: permanent, dead-lettered with it.
    rig.faults(json!({"code_next": 1, "code": 88003})).await;
    rig.send(finish(&ids[2])).await;
    let (dead, headers) = rig.next_dead().await;
    assert_eq!(dead, finish(&ids[2]));
    assert_eq!(header_text(&headers, "x-last-code"), "88003");
    let (key, body) = rig.outcomes(1).await.remove(0);
    assert_eq!(
        (key.as_str(), &body["code"]),
        ("fulfilment.failed", &json!(88003))
    );
}
