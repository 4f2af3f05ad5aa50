//! What anyone allowed to publish on the vhost can put in the permits queue: empty messages,
//! garbage, permits sealed with another key, stale ones, copies of genuine ones. Real worker
//! processes, the sandbox counting calls. (Keeper requests: `keeper_hellos`.)

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::Value;
use weibo_relay::keeper::stamp::{Kind, Stamper};
use weibo_relay::keys::Keyring;

use crate::helpers::*;
use crate::keeper::Deployment;

/// The deployment's keys, and the same merchants with someone else's `client_secret`.
pub(crate) fn keyrings(d: &Deployment) -> (Keyring, Keyring) {
    let genuine = Keyring::derive(&d.settings.merchants);
    let strangers = weibo_relay::config::Merchants::new(
        d.settings
            .merchants
            .iter()
            .map(|m| weibo_relay::config::Merchant {
                client_secret: "somebody-else-0123456789".to_owned().into(),
                ..m.clone()
            })
            .collect(),
    );
    (genuine, Keyring::derive(&strangers))
}

pub(crate) async fn publish(channel: &Channel, queue: &str, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap();
}

/// A worker's sum of `weibo_relay_permits_rejected_total{reason}`.
async fn permits_rejected(d: &Deployment, i: usize, reason: &str) -> f64 {
    d.metric(
        i,
        &format!("weibo_relay_permits_rejected_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// The most platform order calls in any window of `width` ms.
fn busiest(timeline: &[u64], width: u64) -> usize {
    timeline
        .iter()
        .map(|&start| {
            timeline
                .iter()
                .filter(|&&t| t >= start && t < start + width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Permits streamed into the queue by a stranger: 2,000 a second of empty bodies (the issue's
/// reproduction), garbage, permits sealed with another key and genuine-key permits dated 5 s
/// ago, plus genuine permits taken from the queue and put back 50 times each. Two workers with
/// 400 commands at 40 calls a second: the platform sees no more than the rate, every forgery is
/// dropped and counted by reason, and every command still succeeds.
#[tokio::test]
async fn forged_stale_and_copied_permits_buy_no_platform_call() {
    const RATE: u32 = 40;
    let mut d = Deployment::start(Duration::from_secs(7200), RATE).await;
    for _ in 0..2 {
        let i = d.spawn(None).await;
        d.wait_ready(i).await;
    }
    d.the_keeper(Duration::from_secs(5)).await;
    let queue = format!("{}.permits", d.settings.amqp.fulfilment_queue);
    let (genuine, strangers) = keyrings(&d);
    let stale = Stamper::new(&genuine, "forger", &queue).unwrap();
    let wrong_key = Stamper::new(&strangers, "forger", &queue).unwrap();

    let flooder = Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = flooder.create_channel().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let flooding = stop.clone();
    let queue_name = queue.clone();
    let flood = tokio::spawn(async move {
        let (mut sent, mut copies) = (0usize, 0usize);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut round = 0u64;
        while !flooding.is_cancelled() {
            tick.tick().await;
            round += 1;
            for _ in 0..25 {
                publish(&channel, &queue_name, b"").await;
                publish(&channel, &queue_name, br#"{"appid":"100023","mac":"00"}"#).await;
                let forged = serde_json::to_vec(&wrong_key.stamp(Kind::Permit)).unwrap();
                publish(&channel, &queue_name, &forged).await;
                let old = stale.stamp_at(Kind::Permit, weibo_relay::clock::unix_millis() - 5000);
                publish(&channel, &queue_name, &serde_json::to_vec(&old).unwrap()).await;
                sent += 4;
            }
            // Twice a second, a genuine permit is taken and put back 50 times.
            if round.is_multiple_of(10) {
                let got = channel
                    .basic_get(queue_name.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap();
                if let Some(permit) = got {
                    for _ in 0..50 {
                        publish(&channel, &queue_name, &permit.delivery.data).await;
                    }
                    copies += 50;
                }
            }
        }
        (sent, copies)
    });

    let ids = d.sandbox.create_orders(APPID, 400);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(400, Duration::from_secs(90)).await, (400, 0));
    stop.cancel();
    let (sent, copies) = flood.await.unwrap();
    let _ = flooder.close(200, "flood over".into()).await;

    let timeline: Vec<u64> = d
        .http
        .get(format!("{}/admin/timeline", d.sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["order_calls_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(timeline.len(), 400, "{}", d.counters().await);
    let (second, ten) = (busiest(&timeline, 1000), busiest(&timeline, 10_000));
    let mut rejected = [0.0; 3];
    for i in 0..2 {
        for (n, reason) in ["forged", "stale", "repeated"].iter().enumerate() {
            rejected[n] += permits_rejected(&d, i, reason).await;
        }
    }
    eprintln!(
        "{sent} forged and {copies} copied permits at {RATE}/s: at most {second} calls in 1 s, \
         {ten} in 10 s; dropped forged {}, stale {}, repeated {}",
        rejected[0], rejected[1], rejected[2]
    );
    // Within the rate: 10 % over any 10 s; in 1 s at most what the design allows (the rate
    // plus a tick, half a second queued, two held per worker).
    assert!(
        f64::from(ten as u32) <= 1.1 * 10.0 * f64::from(RATE),
        "{ten} in 10 s"
    );
    assert!(
        f64::from(second as u32) <= 1.75 * f64::from(RATE),
        "{second} in 1 s"
    );
    // Each kind was seen and dropped (some of what was sent expired in the queue unread).
    assert!(
        rejected[0] > 0.0 && rejected[1] > 0.0 && rejected[2] > 0.0,
        "{rejected:?}"
    );
    assert!(rejected[0] + rejected[1] <= sent as f64);
}
