//! What anyone allowed to publish on the vhost can put in the permits queue: empty messages,
//! garbage, permits sealed with another key, stale ones, copies of genuine ones. Real worker
//! processes, the sandbox counting calls. (Keeper requests: `keeper_hellos`.)

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::Value;
use weibo_relay::keeper::stamp::{Kind, Stamp, Stamper};
use weibo_relay::keys::Keyring;

use crate::support::deployment::Deployment;
use crate::support::*;

/// The deployment's keys, and the same merchants with someone else's `client_secret`.
pub(crate) fn keyrings(d: &Deployment) -> (Keyring, Keyring) {
    let genuine = Keyring::derive(&d.settings.merchants);
    let strangers = weibo_relay::settings::Merchants::new(
        d.settings
            .merchants
            .iter()
            .map(|m| {
                weibo_relay_tooling::stage::merchant(
                    m.appid().as_str(),
                    secrecy::ExposeSecret::expose_secret(m.sign_key()),
                    m.client_id(),
                    "somebody-else-0123456789",
                    m.uid(),
                )
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

/// Permits streamed into the queue by a stranger while two workers call 200 commands at 40 a
/// second: 1,000 a second of empty bodies (the issue's reproduction), garbage, permits sealed
/// with another key and genuine-key permits dated 5 s ago. Then, as 200 more wait, five genuine
/// permits taken from the queue and put back 20 times each. The platform sees no more than the rate,
/// every forgery and copy is dropped and counted by reason, and every command succeeds.
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
    let ids = d.sandbox.create_orders(APPID, 400);

    // 1. Forged and stale permits, 1,000 a second.
    let stop = tokio_util::sync::CancellationToken::new();
    let (flooding, into, to) = (stop.clone(), channel.clone(), queue.clone());
    let flood = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while !flooding.is_cancelled() {
            tick.tick().await;
            for _ in 0..12 {
                publish(&into, &to, b"").await;
                publish(&into, &to, br#"{"appid":"100023","mac":"00"}"#).await;
                let forged = serde_json::to_vec(&wrong_key.stamp(Kind::Permit)).unwrap();
                publish(&into, &to, &forged).await;
                let old = stale.stamp_at(Kind::Permit, weibo_relay::clock::unix_millis() - 5000);
                publish(&into, &to, &serde_json::to_vec(&old).unwrap()).await;
                sent += 4;
            }
        }
        sent
    });
    d.send_finishes(&ids[..200]).await;
    assert_eq!(d.outcomes(200, Duration::from_secs(90)).await, (200, 0));
    stop.cancel();
    let sent = flood.await.unwrap();

    // 2. Five genuine permits taken from the queue while the workers are idle (a consumer is
    // handed them as they come while they are busy); then, as 200 more commands wait for
    // permits, each put back 20 times.
    let mut taken = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while taken.len() < 5 {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            // The keeper's, not what is left of the flood.
            Some(m) => {
                let stamp = serde_json::from_slice::<Stamp>(&m.delivery.data);
                if stamp.is_ok_and(|stamp| stamp.sender != "forger") {
                    taken.push(m.delivery.data);
                }
            }
            None => {
                assert!(std::time::Instant::now() < deadline, "no permit to copy");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    d.send_finishes(&ids[200..]).await;
    for permit in &taken {
        for _ in 0..20 {
            publish(&channel, &queue, permit).await;
        }
    }
    let copies = 20 * taken.len();
    assert_eq!(d.outcomes(200, Duration::from_secs(90)).await, (200, 0));
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
    // Within the rate: 10 % over any 10 s. In 1 s at most what the design lets through after
    // an idle spell (the rate and a tick, half a second's worth queued, two held per worker)
    // and one use per worker of each copied permit: under twice the rate (measured 56 to 72).
    assert!(
        f64::from(ten as u32) <= 1.1 * 10.0 * f64::from(RATE),
        "{ten} in 10 s"
    );
    assert!(
        f64::from(second as u32) <= 2.0 * f64::from(RATE),
        "{second} in 1 s"
    );
    // Each kind was seen and dropped (some of what was sent expired in the queue unread); of
    // each copied permit, each worker spends one copy at most.
    assert!(
        rejected[0] > 0.0 && rejected[1] > 0.0 && rejected[2] > 0.0,
        "{rejected:?}"
    );
    assert!(rejected[0] + rejected[1] <= sent as f64);
    assert!(rejected[2] <= copies as f64);
}
