//! Provider mode's fulfilment commands in the shipped binary: a command names its merchant by
//! `merchant_ref` (or `uid`, or both); the call is signed with the provider's key and carries that merchant's token;
//! a token the platform refuses is refreshed once in the store and the call repeated; a command
//! naming no merchant, or one nobody has, is dead-lettered with its reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use weibo_relay::amqp::Names;
use weibo_relay_tooling::stage;

use crate::relay::{stderr, stdout, ProviderRelay, UID};
use crate::tap::next_event;

pub(crate) const OTHER_UID: &str = "1404376999";
pub(crate) const PROVIDER_APPID: &str = "100023";

/// A channel on the relay's broker, with the stage's tap also bound to the outcomes.
async fn watch_outcomes(relay: &ProviderRelay) -> (lapin::Connection, Channel) {
    let connection = stage::connect_url(&relay.settings.amqp.url, "provider commands test")
        .await
        .expect("the broker");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .queue_bind(
            stage::tap_queue(&relay.settings).as_str().into(),
            relay.settings.amqp.events_exchange.as_str().into(),
            "fulfilment.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the tap binds to outcomes");
    (connection, channel)
}

async fn send(channel: &Channel, relay: &ProviderRelay, body: serde_json::Value) {
    let names = Names::new(&relay.settings.amqp);
    channel
        .basic_publish(
            "".into(),
            names.fulfilment().into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// The next outcome on the tap (order and merchant events skipped): routing key and body.
async fn next_outcome(channel: &Channel, relay: &ProviderRelay) -> (String, serde_json::Value) {
    next_on_tap(channel, relay, "fulfilment.").await
}

/// The next message on the tap whose routing key starts with `prefix` (others skipped).
async fn next_on_tap(
    channel: &Channel,
    relay: &ProviderRelay,
    prefix: &str,
) -> (String, serde_json::Value) {
    let tap = stage::tap_queue(&relay.settings);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = channel
            .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if let Some(message) = got {
            let key = message.delivery.routing_key.to_string();
            if key.starts_with(prefix) {
                let body = serde_json::from_slice(&message.delivery.data).expect("JSON");
                return (key, body);
            }
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix}* within 30 s; the relay logged:\n{}",
            relay.logged().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message now in the dead queue: its `x-death-reason` and body.
async fn dead_letters(channel: &Channel, relay: &ProviderRelay) -> Vec<(String, String)> {
    let names = Names::new(&relay.settings.amqp);
    let mut dead = Vec::new();
    while let Some(message) = channel
        .basic_get(names.dead().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let reason = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-death-reason").cloned())
            .map(|v| match v {
                AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        dead.push((
            reason,
            String::from_utf8_lossy(&message.delivery.data).into_owned(),
        ));
    }
    dead
}

/// Platform calls made with any merchant's token so far.
fn calls_made(relay: &ProviderRelay) -> u64 {
    relay
        .sandbox
        .oauth2()
        .counters()
        .calls_by_uid
        .values()
        .sum()
}

/// Sends each command and expects it dead at once: a failed outcome with its reason and no
/// attempt, and the dead queue holding exactly these, in order.
async fn expect_dead_at_once(
    channel: &Channel,
    relay: &ProviderRelay,
    cases: &[(serde_json::Value, &str)],
) {
    for (body, why) in cases {
        send(channel, relay, body.clone()).await;
        let (key, outcome) = next_outcome(channel, relay).await;
        assert_eq!(
            (
                key.as_str(),
                outcome["msg"].as_str(),
                outcome["attempts"].as_i64()
            ),
            ("fulfilment.failed", Some(*why), Some(0)),
            "{outcome}"
        );
    }
    let dead = dead_letters(channel, relay).await;
    let reasons: Vec<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, why)| *why).collect();
    assert_eq!(reasons, expected);
}

pub(crate) async fn authorize(relay: &ProviderRelay, merchant_ref: &str, uid: &str) {
    let linked = relay.merchants(&["link", "--ref", merchant_ref]);
    assert!(linked.status.success(), "{}", stderr(&linked));
    assert_eq!(relay.consent(stdout(&linked).trim(), uid).await, 200);
    let (key, merchant, _) = next_event(&relay.settings).await;
    assert_eq!(
        (key.as_str(), merchant.as_str()),
        ("merchant.authorized", merchant_ref)
    );
}

#[tokio::test]
async fn commands_call_with_the_named_merchants_token_and_unknown_ones_are_dead_lettered() {
    let relay = ProviderRelay::start().await;
    authorize(&relay, "shop-1", UID).await;
    authorize(&relay, "shop-2", OTHER_UID).await;
    let (connection, channel) = watch_outcomes(&relay).await;
    let orders = relay.sandbox.create_orders(PROVIDER_APPID, 3);

    // Each merchant's command is called with that merchant's token, signed by the provider.
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-1",
            "sub_order_id": orders[0], "action": "finish"}),
    )
    .await;
    let (key, outcome) = next_outcome(&channel, &relay).await;
    assert_eq!(key, "fulfilment.succeeded", "{outcome}");
    assert_eq!(outcome["command"]["merchant_ref"], "shop-1", "{outcome}");
    assert_eq!(outcome["attempts"], 1, "{outcome}");
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-2",
            "sub_order_id": orders[1], "action": "close", "reason": "out of stock"}),
    )
    .await;
    let (key, outcome) = next_outcome(&channel, &relay).await;
    assert_eq!(key, "fulfilment.succeeded", "{outcome}");
    assert_eq!(outcome["command"]["merchant_ref"], "shop-2", "{outcome}");
    let calls = relay.sandbox.oauth2().counters().calls_by_uid;
    assert_eq!(
        calls,
        BTreeMap::from([(UID.to_owned(), 1), (OTHER_UID.to_owned(), 1)])
    );

    // A token the platform refuses: one refresh in the store, the call repeated.
    assert_eq!(relay.sandbox.oauth2().expire_access(UID), 1);
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-1",
            "sub_order_id": orders[2], "action": "finish"}),
    )
    .await;
    let (key, outcome) = next_outcome(&channel, &relay).await;
    assert_eq!(key, "fulfilment.succeeded", "{outcome}");
    let counters = relay.sandbox.oauth2().counters();
    assert_eq!(counters.refreshed_by_uid.get(UID), Some(&1));
    assert_eq!(counters.refresh_presented_again, 0);
    assert_eq!(counters.calls_by_uid.get(UID), Some(&2));

    // No merchant named, or one nobody has: dead at once, no call.
    expect_dead_at_once(
        &channel,
        &relay,
        &[
            (
                serde_json::json!({"appid": PROVIDER_APPID, "sub_order_id": "1", "action": "finish"}),
                "provider mode: the command names no merchant_ref (or uid)",
            ),
            (
                serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-9",
                    "sub_order_id": "1", "action": "finish"}),
                "unknown merchant_ref shop-9",
            ),
        ],
    )
    .await;
    assert_eq!(calls_made(&relay), 3, "no call for a dead command");
    let _ = connection.close(200, "done".into()).await;
    relay.stop().await;
}

#[tokio::test]
async fn commands_may_name_their_merchant_by_uid_and_a_uid_that_does_not_fit_is_dead_lettered() {
    let relay = ProviderRelay::start().await;
    authorize(&relay, "shop-1", UID).await;
    authorize(&relay, "shop-2", OTHER_UID).await;
    let (connection, channel) = watch_outcomes(&relay).await;
    let orders = relay.sandbox.create_orders(PROVIDER_APPID, 3);

    // By uid alone (a number, as the platform writes uids): that merchant's token.
    let uid: u64 = UID.parse().expect("a numeric uid");
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "uid": uid,
            "sub_order_id": orders[0], "action": "finish"}),
    )
    .await;
    let (key, outcome) = next_outcome(&channel, &relay).await;
    assert_eq!(key, "fulfilment.succeeded", "{outcome}");
    assert_eq!(outcome["command"]["uid"], UID, "{outcome}");
    assert!(
        outcome["command"].get("merchant_ref").is_none(),
        "{outcome}"
    );
    // By both, naming the same merchant.
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-2", "uid": OTHER_UID,
            "sub_order_id": orders[1], "action": "close", "reason": "out of stock"}),
    )
    .await;
    let (key, outcome) = next_outcome(&channel, &relay).await;
    assert_eq!(key, "fulfilment.succeeded", "{outcome}");
    assert_eq!(
        (
            &outcome["command"]["merchant_ref"],
            &outcome["command"]["uid"]
        ),
        (&serde_json::json!("shop-2"), &serde_json::json!(OTHER_UID)),
        "{outcome}"
    );
    assert_eq!(
        relay.sandbox.oauth2().counters().calls_by_uid,
        BTreeMap::from([(UID.to_owned(), 1), (OTHER_UID.to_owned(), 1)])
    );

    // A uid nobody has, one that is another merchant's than the ref: dead at once, failed
    // outcomes, no call made.
    expect_dead_at_once(
        &channel,
        &relay,
        &[
            (
                serde_json::json!({"appid": PROVIDER_APPID, "uid": "1404370000",
                    "sub_order_id": "1", "action": "finish"}),
                "no merchant has uid 1404370000",
            ),
            (
                serde_json::json!({"appid": PROVIDER_APPID, "merchant_ref": "shop-1",
                    "uid": OTHER_UID, "sub_order_id": "1", "action": "finish"}),
                "uid 1404376999 is merchant_ref shop-2's, not shop-1's",
            ),
        ],
    )
    .await;
    assert_eq!(calls_made(&relay), 2, "no call for a dead command");
    // One that is no uid is malformed: dead with the value escaped, and no outcome (as any
    // command the worker cannot read).
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "uid": "14043\u{1b}[2J",
            "sub_order_id": "1", "action": "finish"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = dead_letters(&channel, &relay).await;
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons: Vec<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        ["malformed command: uid \"14043\\u{1b}[2J\" is not 1 to 20 digits"]
    );

    // Withdrawn at Weibo with the cancel callback lost: the refused call, the refused refresh
    // and get_token_info make shop-2 revoked, one event saying why.
    let withdrawn: serde_json::Value = relay
        .http
        .post(format!("{}/admin/oauth2/cancel", relay.sandbox.base_url()))
        .json(&serde_json::json!({"uid": OTHER_UID, "notify": false}))
        .send()
        .await
        .expect("the sandbox's admin API")
        .json()
        .await
        .expect("JSON");
    assert_eq!(withdrawn, serde_json::json!({"withdrawn": 1}));
    assert_eq!(relay.sandbox.oauth2().counters().cancel_calls, 0);
    send(
        &channel,
        &relay,
        serde_json::json!({"appid": PROVIDER_APPID, "uid": OTHER_UID,
            "sub_order_id": orders[2], "action": "finish"}),
    )
    .await;
    let (_, revoked) = next_on_tap(&channel, &relay, "merchant.revoked").await;
    assert_eq!(
        (&revoked["merchant_ref"], &revoked["reason"]),
        (
            &serde_json::json!("shop-2"),
            &serde_json::json!("authorization_withdrawn")
        ),
        "{revoked}"
    );
    let _ = connection.close(200, "done".into()).await;
    relay.stop().await;
}
