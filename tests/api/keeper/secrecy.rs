//! The token on the broker: sealed whenever it travels, and only a seal under the merchant's
//! key is believed.

use super::support::*;
use crate::support::deployment::Deployment;
use crate::support::rig::finish;
use crate::support::*;
use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_token_never_crosses_the_broker_in_clear() {
    use weibo_relay::keeper::wire::{open, MerchantKeys, TokenMessage};
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    // Everything announced on the tokens exchange, as any user of the vhost could read it.
    let tap = format!("{}.tap", d.settings.amqp.fulfilment_queue);
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    // And everything any process of this deployment publishes anywhere, through RabbitMQ's
    // firehose: the events exchange (outcomes), the tokens exchange, and the default exchange
    // (keeper requests, permits, delay and dead queues).
    let firehose = Firehose::on();
    let all = format!("{}.firehose", d.settings.amqp.fulfilment_queue);
    d.channel
        .queue_declare(all.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    for exchange in [
        d.settings.amqp.events_exchange.clone(),
        format!("{}.tokens", d.settings.amqp.fulfilment_queue),
        String::new(),
    ] {
        d.channel
            .queue_bind(
                all.as_str().into(),
                "amq.rabbitmq.trace".into(),
                format!("publish.{exchange}").as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let first = d.spawn(None).await;
    d.wait_ready(first).await;
    d.channel
        .queue_declare(tap.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    d.channel
        .queue_bind(
            tap.as_str().into(),
            format!("{}.tokens", d.settings.amqp.fulfilment_queue)
                .as_str()
                .into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // A second process says hello (the keeper announces its token), then a rejection makes
    // the keeper refresh (and announce again).
    let second = d.spawn(None).await;
    d.wait_ready(second).await;
    d.http
        .post(format!("{}/admin/tokens/revoke", d.sandbox.base_url()))
        .json(&json!({"appid": APPID, "code": 21332}))
        .send()
        .await
        .unwrap();
    let ids = d.sandbox.create_orders(APPID, 4);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(4, Duration::from_secs(20)).await, (4, 0));
    assert_eq!(d.tokens_issued().await, 2);
    // One command that is retried, then dead-lettered: delay and dead queue messages too.
    d.sandbox.create_orders(APPID, 1);
    d.channel
        .basic_publish(
            "".into(),
            d.settings.amqp.fulfilment_queue.as_str().into(),
            BasicPublishOptions::default(),
            finish("no-such-order").to_string().as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    assert_eq!(d.outcomes(1, Duration::from_secs(20)).await, (0, 1));
    // Platform gateway calls through the durable door, a write and a read (their outcomes
    // carry the platform's data), and one dead-lettered: still no token in any message.
    for (interface, params, id) in [
        (
            "goods/setGoodsStockSkuid",
            json!({"goods_id": "1", "sku_id": "2", "stock": 3}),
            "c-1",
        ),
        ("goods/getGoodsInfo", json!({"goods_id": "1"}), "c-2"),
        ("goods/noSuchThing", json!({}), "c-3"),
    ] {
        let call = json!({"appid": APPID, "action": "call", "interface": interface,
            "params": params, "id": id});
        d.channel
            .basic_publish(
                "".into(),
                d.settings.amqp.fulfilment_queue.as_str().into(),
                BasicPublishOptions::default(),
                call.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    assert_eq!(d.outcomes(3, Duration::from_secs(20)).await, (2, 1));

    let mut generations = Vec::new();
    let channel = d.connection.create_channel().await.unwrap();
    loop {
        let got = channel
            .basic_get(tap.as_str().into(), Default::default())
            .await
            .unwrap();
        let Some(message) = got else { break };
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        assert!(!contains_token(&body), "a token in clear: {body}");
        if message.delivery.routing_key.as_str() == "keeper.leader" {
            // The leader's heartbeat: a stamp, no token.
            continue;
        }
        let sealed: TokenMessage = serde_json::from_str(&body).unwrap();
        let merchant = d.settings.merchants.get(&sealed.appid).unwrap();
        let plain =
            open(&MerchantKeys::derive(merchant), &sealed).expect("sealed with the merchant's key");
        if sealed.appid.as_str() != APPID {
            continue;
        }
        assert!(contains_token(secrecy::ExposeSecret::expose_secret(
            &plain.access_token
        )));
        generations.push(sealed.generation);
    }
    assert!(generations.len() >= 2, "{generations:?}");
    assert!(
        generations.windows(2).any(|w| w[1] > w[0]),
        "{generations:?}"
    );

    // Every message this deployment published, body and headers: no token in clear. The
    // trace stops first: on a shared broker, with permits issued all the while, the copies
    // could otherwise come faster than they are read here.
    drop(firehose);
    let prefix = d
        .settings
        .amqp
        .fulfilment_queue
        .trim_end_matches("fulfilment")
        .to_owned();
    let mut ours = std::collections::BTreeMap::<String, usize>::new();
    loop {
        let got = channel
            .basic_get(all.as_str().into(), Default::default())
            .await
            .unwrap();
        let Some(message) = got else { break };
        let headers = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(table_text)
            .unwrap_or_default();
        let exchange = message
            .delivery
            .routing_key
            .as_str()
            .trim_start_matches("publish.")
            .to_owned();
        // The default exchange carries every test's messages: ours are routed to our names.
        if !exchange.starts_with(&prefix) && !headers.contains(&prefix) {
            continue;
        }
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        assert!(
            !contains_token(&body),
            "a token in clear on {exchange}: {body}"
        );
        assert!(
            !contains_token(&headers),
            "a token in clear in headers on {exchange}: {headers}"
        );
        *ours.entry(exchange).or_default() += 1;
    }
    // Something was seen on each of the three: the check looked where the messages are.
    assert_eq!(ours.len(), 3, "{ours:?}");
}

/// Anyone who can write to the tokens exchange can send an announcement; only one sealed
/// with the merchant's key is believed. Garbage, a bad seal and a seal under another key
/// (with a tempting generation and a forged token) are each counted and ignored: the worker
/// keeps its token, asks for no other, and every command succeeds with it.
#[tokio::test]
async fn announcements_that_do_not_open_are_counted_and_ignored() {
    use weibo_relay::keeper::wire::{seal, MerchantKeys, TokenMessage, TokenPlain};
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    let only = d.spawn(None).await;
    d.wait_ready(only).await;
    assert_eq!(d.tokens_issued().await, 1);
    let rejected = "weibo_relay_token_messages_rejected_total";
    assert_eq!(d.metric(only, rejected).await, 0.0);

    let ours = d.settings.merchants.get(APPID).unwrap();
    let stranger = weibo_relay_tooling::stage::merchant(
        APPID,
        secrecy::ExposeSecret::expose_secret(ours.sign_key()),
        ours.client_id(),
        "somebody-else-0123456789",
        ours.uid(),
    );
    let appid = ours.appid().clone();
    let forged = TokenPlain {
        access_token: format!("2.00{}", "F".repeat(30)).into(),
        issued_at: 0,
        expires_in: 7200,
        obtained_at_ms: 0,
    };
    let wrong_key = seal(&MerchantKeys::derive(&stranger), &appid, 999, &forged);
    let mut altered = seal(
        &MerchantKeys::derive(d.settings.merchants.get(APPID).unwrap()),
        &appid,
        998,
        &forged,
    );
    // Announced under another generation than the one sealed in (the generation is bound).
    altered.generation = 1000;
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        serde_json::to_vec(&TokenMessage {
            sealed: "AAAA".into(),
            ..wrong_key.clone()
        })
        .unwrap(),
        serde_json::to_vec(&wrong_key).unwrap(),
        serde_json::to_vec(&altered).unwrap(),
    ];
    let exchange = format!("{}.tokens", d.settings.amqp.fulfilment_queue);
    for body in &bodies {
        d.channel
            .basic_publish(
                exchange.as_str().into(),
                APPID.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counted = bodies.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric(only, rejected).await < counted {
        assert!(
            Instant::now() < deadline,
            "not every bad announcement counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.metric(only, rejected).await, counted);
    let ids = d.sandbox.create_orders(APPID, 5);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(5, Duration::from_secs(20)).await, (5, 0));
    assert_eq!(d.tokens_issued().await, 1);
    // Every call was made with the genuine token: none refused for its token.
    let calls = &d.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls, &json!({"0": 5}), "{calls}");
}
