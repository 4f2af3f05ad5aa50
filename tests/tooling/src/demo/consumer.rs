//! The sample fulfilment consumer: what a merchant writes. It reads paid sub-order events,
//! "delivers", and answers with a finish (most) or close (a few) command.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use weibo_relay::settings::AmqpSettings;

/// What the consumer did.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Events received, duplicates included.
    pub events: u64,
    /// Events skipped because their `message_id` was seen before.
    pub duplicates: u64,
    /// Events skipped because another event (another `message_id`) brought the same order
    /// state before: a state reconciled and pushed too.
    pub repeated_states: u64,
    /// Finish commands sent.
    pub finishes: u64,
    /// Close commands sent.
    pub closes: u64,
    /// `merchant.*` events (provider mode: one per merchant authorized).
    pub merchant_events: u64,
    /// Time from receiving an event to the command's confirm.
    pub latencies: Vec<Duration>,
}

/// A running sample consumer.
pub struct SampleConsumer {
    connection: Connection,
    task: JoinHandle<()>,
    stats: Arc<Mutex<ConsumerStats>>,
}

impl SampleConsumer {
    /// Binds its own queue to `order.sub_order.201` (and `merchant.#`, a provider's merchants'
    /// news) and starts answering; every `close_every`-th order (by id) is closed, the rest
    /// finished.
    pub async fn start(amqp: &AmqpSettings, close_every: u64) -> anyhow::Result<Self> {
        let connection =
            weibo_relay::amqp::connect_once(amqp, "weibo-relay sample consumer").await?;
        let channel = weibo_relay::amqp::confirm_channel(&connection).await?;
        let names = weibo_relay::amqp::Names::new(amqp);
        let queue = names.consumer("sample-consumer");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        for key in ["order.sub_order.201", "merchant.#"] {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    names.events_exchange().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "sample-consumer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let stats = Arc::new(Mutex::new(ConsumerStats::default()));
        let (task_stats, work_queue) = (stats.clone(), amqp.fulfilment_queue.clone());
        let task = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut states = HashSet::new();
            while let Some(Ok(delivery)) = consumer.next().await {
                let started = Instant::now();
                if delivery.routing_key.as_str().starts_with("merchant.") {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                    let Ok(mut s) = task_stats.lock() else { return };
                    s.merchant_events += 1;
                    continue;
                }
                let id = delivery
                    .properties
                    .message_id()
                    .clone()
                    .map(|m| m.to_string());
                // Consumers dedupe on message_id (the relay delivers at least once), and on
                // the state (a reconciled state has an event id of its own).
                let fresh = id.is_none_or(|id| seen.insert(id));
                let new_state = !fresh || state_of(&delivery.data).is_none_or(|s| states.insert(s));
                let command = (fresh && new_state)
                    .then(|| command_for(&delivery.data, close_every))
                    .flatten();
                if let Some(command) = &command {
                    if send(&channel, &work_queue, command).await.is_err() {
                        // Not acked: the event comes back and is answered again.
                        continue;
                    }
                }
                let _ = delivery.ack(BasicAckOptions::default()).await;
                let Ok(mut s) = task_stats.lock() else { return };
                s.events += 1;
                match command.as_ref().and_then(|c| c["action"].as_str()) {
                    Some("finish") => s.finishes += 1,
                    Some("close") => s.closes += 1,
                    _ if !fresh => s.duplicates += 1,
                    _ => s.repeated_states += u64::from(!new_state),
                }
                s.latencies.push(started.elapsed());
            }
        });
        Ok(Self {
            connection,
            task,
            stats,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> std::sync::MutexGuard<'_, ConsumerStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops consuming; its queue goes away with the connection.
    pub async fn stop(self) {
        let _ = self.connection.close(200, "demo done".into()).await;
        self.task.abort();
    }
}

/// (appid, sub_order_id, state_code) of an event.
fn state_of(event: &[u8]) -> Option<(String, String, String)> {
    let event: Value = serde_json::from_slice(event).ok()?;
    Some((
        event["appid"].as_str()?.to_owned(),
        event["sub_order_id"].as_str()?.to_owned(),
        event["state_code"].to_string(),
    ))
}

fn command_for(event: &[u8], close_every: u64) -> Option<Value> {
    let event: Value = serde_json::from_slice(event).ok()?;
    let appid = event["appid"].as_str()?;
    let id = event["sub_order_id"].as_str()?;
    let close = close_every > 0 && id.parse::<u64>().ok()? % close_every == 0;
    let mut command = if close {
        json!({"appid": appid, "sub_order_id": id, "action": "close", "reason": "out of stock (demo)"})
    } else {
        json!({"appid": appid, "sub_order_id": id, "action": "finish"})
    };
    // Provider mode: the command names the merchant its event named.
    if let Some(merchant_ref) = event["merchant_ref"].as_str() {
        command["merchant_ref"] = json!(merchant_ref);
    }
    Some(command)
}

async fn send(channel: &Channel, queue: &str, command: &Value) -> anyhow::Result<()> {
    let body = serde_json::to_vec(command).unwrap_or_default();
    weibo_relay::amqp::publish_confirmed(
        channel,
        weibo_relay::amqp::Outgoing {
            exchange: "",
            routing_key: queue,
            body: &body,
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into()),
        },
    )
    .await?;
    Ok(())
}
