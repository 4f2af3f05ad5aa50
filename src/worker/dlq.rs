//! Operator tools for `<fulfilment_queue>.dead`: list dead commands, move them back.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection};
use serde::Serialize;

use super::headers::{self, ATTEMPTS, DEATH_REASON, LAST_CODE};
use crate::amqp::Names;
use crate::settings::AmqpSettings;

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
    /// `x-last-code` as a number, as outcomes give it; `None` when absent or not a number.
    pub last_code: Option<i64>,
}

/// What `dlq redrive` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Redriven {
    /// Dead commands in the queue when it started: the most it moves.
    pub held: u32,
    /// Moved back to the work queue, each once.
    pub moved: usize,
    /// Read again after being moved (they failed again meanwhile) and left in `.dead`.
    pub returned: usize,
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
    let queue = Names::new(amqp).dead().to_owned();
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
            last_code: code_header(props),
        });
    }
    // Closing without acking returns every message read to the dead queue.
    conn.close(200, "dlq list done".into()).await?;
    Ok(out)
}

/// Moves up to `limit` dead commands back to the work queue with their attempt count reset;
/// each is removed from `.dead` only after the work queue confirmed it.
///
/// A worker running meanwhile may fail a moved command again and dead-letter it anew, behind
/// the others: so at most as many as the queue held at the start are read, and a command read
/// again after it was moved (the same id and body) is left where it is. Each is moved once.
pub async fn redrive(amqp: &AmqpSettings, limit: usize) -> anyhow::Result<Redriven> {
    let conn = connect(amqp).await?;
    let queue = Names::new(amqp).dead().to_owned();
    let held = match crate::amqp::topology::queue_depth(&conn, &queue).await {
        Ok(Some(held)) => held,
        Ok(None) => {
            conn.close(200, "dlq redrive done".into()).await?;
            return Ok(Redriven::default());
        }
        Err(e) => anyhow::bail!("cannot read {queue}: {e}"),
    };
    let channel = crate::amqp::confirm_channel(&conn).await?;
    let mut done = Redriven {
        held,
        ..Redriven::default()
    };
    let mut moved = std::collections::HashSet::new();
    let mut read = 0usize;
    while done.moved < limit && read < held as usize {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {queue}: {e}"))?;
        let Some(message) = got else { break };
        read += 1;
        let fingerprint = (
            dead_id(&message.delivery),
            body_digest(&message.delivery.data),
        );
        if moved.contains(&fingerprint) {
            // Unacknowledged, it goes back to `.dead` when the connection closes.
            done.returned += 1;
            continue;
        }
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
                "the work queue {} did not take a command ({error}); it stays in {queue} \
                 ({} moved before it)",
                amqp.fulfilment_queue,
                done.moved
            );
        }
        message.delivery.ack(BasicAckOptions::default()).await?;
        moved.insert(fingerprint);
        done.moved += 1;
    }
    conn.close(200, "dlq redrive done".into()).await?;
    Ok(done)
}

/// Removes the dead command `id` (as `dlq list` shows it) for good; every other one stays.
/// Returns whether it was found.
pub async fn drop(amqp: &AmqpSettings, id: &str) -> anyhow::Result<bool> {
    let conn = connect(amqp).await?;
    let queue = Names::new(amqp).dead().to_owned();
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
        let found_id = dead_id(&message.delivery);
        // As stored, or as `dlq list` printed it.
        if found_id == id || shown_id(&found_id) == id {
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
        _ => format!("sha256:{}", hex::encode(&body_digest(&delivery.data)[..16])),
    }
}

fn body_digest(body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(body).into()
}

/// An id as `dlq list` prints it: escaped for the terminal, spaces too (the fields of a line
/// are separated by spaces); `dlq drop --id` takes this form as well.
pub fn shown_id(id: &str) -> String {
    crate::telemetry::printable(id).replace(' ', "\\u{20}")
}

fn text_header(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// `x-last-code` as the number the relay wrote (as text); anything else is no code.
fn code_header(props: &BasicProperties) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(LAST_CODE)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().parse().ok(),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}
