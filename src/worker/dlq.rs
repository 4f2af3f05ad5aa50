//! Operator tools for `<fulfilment_queue>.dead`: list dead commands, move them back.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection};
use serde::Serialize;

use super::headers::{self, ATTEMPTS, DEATH_REASON, LAST_CODE};
use super::retry::dead_queue;
use crate::config::AmqpSettings;

/// One dead command as `dlq list` shows it.
#[derive(Debug, Serialize)]
pub struct DeadCommand {
    /// What `dlq drop --id` takes: the message's `message_id`, or, for a command published
    /// without one, `sha256:` and the first 32 hex digits of its body's SHA-256.
    pub id: String,
    /// The command body as text.
    pub body: String,
    /// `x-death-reason`.
    pub reason: Option<String>,
    /// `x-attempts`.
    pub attempts: u32,
    /// `x-last-code`.
    pub last_code: Option<String>,
}

async fn connect(amqp: &AmqpSettings) -> anyhow::Result<Connection> {
    Ok(crate::amqp::connect_once(amqp, "weibo-relay dlq").await?)
}

/// True when `queue` exists. A missing dead queue means no worker ever ran with this
/// `fulfilment_queue`: nothing died, which is not an error for the operator.
async fn exists(conn: &Connection, queue: &str) -> anyhow::Result<bool> {
    crate::amqp::topology::queue_depth(conn, queue)
        .await
        .map(|depth| depth.is_some())
        .map_err(|e| anyhow::anyhow!("cannot read {queue}: {e}"))
}

/// Reads up to `limit` dead commands without removing them.
pub async fn list(amqp: &AmqpSettings, limit: usize) -> anyhow::Result<Vec<DeadCommand>> {
    let conn = connect(amqp).await?;
    let queue = dead_queue(&amqp.fulfilment_queue);
    if !exists(&conn, &queue).await? {
        conn.close(200, "dlq list done".into()).await?;
        return Ok(Vec::new());
    }
    let channel = conn.create_channel().await?;
    let mut out = Vec::new();
    while out.len() < limit {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {queue}: {e}"))?;
        let Some(message) = got else { break };
        let props = &message.delivery.properties;
        out.push(DeadCommand {
            id: dead_id(&message.delivery),
            body: String::from_utf8_lossy(&message.delivery.data).into_owned(),
            reason: text_header(props, DEATH_REASON),
            attempts: headers::shown_attempts(props),
            last_code: text_header(props, LAST_CODE),
        });
    }
    // Closing without acking returns every message read to the dead queue.
    conn.close(200, "dlq list done".into()).await?;
    Ok(out)
}

/// Moves up to `limit` dead commands back to the work queue with their attempt count reset;
/// each is removed from `.dead` only after the work queue confirmed it. Returns the count.
pub async fn redrive(amqp: &AmqpSettings, limit: usize) -> anyhow::Result<usize> {
    let conn = connect(amqp).await?;
    if !exists(&conn, &dead_queue(&amqp.fulfilment_queue)).await? {
        conn.close(200, "dlq redrive done".into()).await?;
        return Ok(0);
    }
    let channel = crate::amqp::confirm_channel(&conn).await?;
    let queue = dead_queue(&amqp.fulfilment_queue);
    let mut moved = 0;
    while moved < limit {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {queue}: {e}"))?;
        let Some(message) = got else { break };
        let original = &message.delivery.properties;
        let reset: [(&str, Option<AMQPValue>); 3] =
            [(ATTEMPTS, None), (DEATH_REASON, None), (LAST_CODE, None)];
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers::carried(original, &reset));
        if let Some(ct) = original.content_type() {
            properties = properties.with_content_type(ct.clone());
        }
        let stored = crate::amqp::publish_confirmed(
            &channel,
            crate::amqp::Outgoing {
                exchange: "",
                routing_key: &amqp.fulfilment_queue,
                body: &message.delivery.data,
                properties,
            },
        )
        .await;
        if let Err(error) = stored {
            anyhow::bail!(
                "the work queue {} did not take a command ({error}); it stays in {queue}",
                amqp.fulfilment_queue
            );
        }
        message.delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    conn.close(200, "dlq redrive done".into()).await?;
    Ok(moved)
}

/// Removes the dead command `id` (as `dlq list` shows it) for good; every other one stays.
/// Returns whether it was found.
pub async fn drop(amqp: &AmqpSettings, id: &str) -> anyhow::Result<bool> {
    let conn = connect(amqp).await?;
    let queue = dead_queue(&amqp.fulfilment_queue);
    if !exists(&conn, &queue).await? {
        conn.close(200, "dlq drop done".into()).await?;
        return Ok(false);
    }
    let channel = conn.create_channel().await?;
    let mut found = false;
    // Messages taken without an ack stay with this channel, so each get returns the next one;
    // closing the channel puts every one not acked back.
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {queue}: {e}"))?
    {
        if dead_id(&message.delivery) == id {
            message.delivery.ack(BasicAckOptions::default()).await?;
            found = true;
            break;
        }
    }
    conn.close(200, "dlq drop done".into()).await?;
    Ok(found)
}

fn dead_id(delivery: &lapin::message::Delivery) -> String {
    match delivery.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.to_string(),
        _ => {
            use sha2::{Digest, Sha256};
            format!(
                "sha256:{}",
                hex::encode(&Sha256::digest(&delivery.data)[..16])
            )
        }
    }
}

fn text_header(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}
