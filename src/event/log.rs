//! Reading the event log, the stream `<events_queue>.log`, over AMQP 0-9-1 (no plugin): a
//! consumer with an `x-stream-offset`, a bounded prefetch, and each message acknowledged as it
//! is read, so memory stays bounded whatever the log's size. AMQP 0-9-1 cannot tell a reader
//! where a stream ends, so a reading that needs an end appends a mark and reads up to it.
//!
//! Anyone allowed to publish on the vhost can append to the log, so a reader returns only
//! the entries the relay sealed (see [`super::seal`]) and counts the rest as skipped.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};

use super::seal;
use crate::amqp::{Outgoing, PublishError, Publisher};
use crate::ids::AppId;
use crate::keys::Keyring;

/// Messages read ahead; a stream consumer needs a prefetch. Anyone who may publish can make
/// entries as large as the broker takes (128 MiB on RabbitMQ 3.10), and a reader holds up to
/// this many before it can look at them: kept small, so 4 MB junk entries cost tens of MB
/// rather than gigabytes, yet enough to keep a reading of small entries from waiting on
/// each acknowledgement (README, Recovery, has the measurements).
const PREFETCH: u16 = 8;
/// The AMQP `type` of a read mark: a message the relay appends to the log so a reader knows
/// where the log ended when the reading began. Readers of the log skip it.
pub const MARK_TYPE: &str = "weibo-relay.log-mark";
/// A reading that gets nothing for this long before its mark has stalled: an error, never
/// taken as the end of the log.
const STALL: Duration = Duration::from_secs(30);

/// Where reading starts.
#[derive(Debug, Clone, Copy)]
pub enum Offset {
    /// Around this time: from the chunk holding it, so a few earlier events may come first.
    Since(SystemTime),
    /// Only events published from now on.
    Next,
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The broker refused or dropped the reading.
    #[error("{0}")]
    Read(#[from] lapin::Error),
    /// The read mark could not be appended.
    #[error("read mark not stored: {0}")]
    Mark(#[from] PublishError),
    /// Nothing arrived for a while although the mark was not reached yet.
    #[error("no event for {0:?} before the end of the log")]
    Stalled(Duration),
}

/// What a reading accepts: entries sealed under these keys, no larger than this.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    /// The configured merchants' keys.
    pub keys: Keyring,
    /// Entries larger than this are skipped unread; `None`: any size.
    pub max_entry_bytes: Option<usize>,
}

/// Entries a reading skipped, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// No seal, or one that does not verify under the configured merchants' keys.
    pub unsealed: u64,
    /// Larger than the reading accepts (never opened).
    pub oversized: u64,
}

impl Skipped {
    /// Every skipped entry.
    pub fn total(&self) -> u64 {
        self.unsealed.saturating_add(self.oversized)
    }
}

/// An entry of the log the relay sealed: its merchant, source and time are the relay's own.
#[derive(Debug)]
pub struct LogEntry {
    /// The message as read.
    pub delivery: Delivery,
    /// The merchant (header `x-weibo-appid`).
    pub appid: AppId,
    /// When the relay received the event (the `timestamp` property).
    pub received_at: SystemTime,
}

/// An open reading of the log.
pub struct LogReader {
    channel: Channel,
    consumer: Consumer,
    /// The mark that ends this reading, when it has an end.
    end: Option<String>,
    accept: Accept,
    skipped: Skipped,
}

impl LogReader {
    /// Reads `stream` from `since` up to its end as it is now: a mark is appended (through
    /// `publisher`, confirmed) before the reading starts, and the reading ends on it. No
    /// time-out decides where the log ends, so a slow broker cannot make a reading short.
    pub async fn to_end(
        connection: &Connection,
        publisher: &Publisher,
        stream: &str,
        since: SystemTime,
        accept: Accept,
    ) -> Result<Self, LogError> {
        let mark = format!("mark-{}", uuid::Uuid::new_v4().simple());
        publisher
            .publish(Outgoing {
                exchange: "",
                routing_key: stream,
                body: b"",
                properties: BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_type(MARK_TYPE.into())
                    .with_message_id(mark.as_str().into())
                    .with_timestamp(crate::clock::unix_secs()),
            })
            .await?;
        let mut reader = Self::open(connection, stream, Offset::Since(since), accept).await?;
        reader.end = Some(mark);
        Ok(reader)
    }

    /// Reads `stream` from `offset` on, with no end.
    pub async fn open(
        connection: &Connection,
        stream: &str,
        offset: Offset,
        accept: Accept,
    ) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        let start = match offset {
            Offset::Since(at) => AMQPValue::Timestamp(crate::clock::secs_of(at)),
            Offset::Next => AMQPValue::LongString(LongString::from("next")),
        };
        arguments.insert("x-stream-offset".into(), start);
        let consumer = channel
            .basic_consume(
                stream.into(),
                "weibo-relay-event-log".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await?;
        Ok(Self {
            channel,
            consumer,
            end: None,
            accept,
            skipped: Skipped::default(),
        })
    }

    /// The next entry the relay sealed, acknowledged; `None` at this reading's mark or when
    /// the consumer ended. Marks (this reading's and other readers') are never returned;
    /// anything else is counted in [`skipped`](Self::skipped).
    pub async fn next(&mut self) -> Result<Option<LogEntry>, LogError> {
        loop {
            let next = self.consumer.next();
            let delivery = if self.end.is_some() {
                tokio::time::timeout(STALL, next)
                    .await
                    .map_err(|_| LogError::Stalled(STALL))?
            } else {
                next.await
            };
            let delivery = match delivery {
                Some(delivery) => delivery?,
                None => return Ok(None),
            };
            // Credit for the stream, not a removal: a stream keeps what it holds.
            delivery.ack(BasicAckOptions::default()).await?;
            if !is_mark(&delivery) {
                match accepted(&self.accept, &mut self.skipped, delivery) {
                    Some(entry) => return Ok(Some(entry)),
                    None => continue,
                }
            }
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str());
            if id.is_some() && id == self.end.as_deref() {
                return Ok(None);
            }
        }
    }

    /// Entries skipped so far.
    pub fn skipped(&self) -> Skipped {
        self.skipped
    }

    /// Stops reading.
    pub async fn close(self) {
        let _ = self.channel.close(200, "event log read".into()).await;
    }
}

/// `delivery` as a sealed entry, or counted in `skipped`: the size first, so an oversized
/// entry is never hashed nor parsed.
fn accepted(accept: &Accept, skipped: &mut Skipped, delivery: Delivery) -> Option<LogEntry> {
    if accept
        .max_entry_bytes
        .is_some_and(|max| delivery.data.len() > max)
    {
        skipped.oversized = skipped.oversized.saturating_add(1);
        return None;
    }
    let verified = seal::verify(&accept.keys, &delivery)
        .and_then(|v| Some((v.appid, received_at(v.timestamp)?)));
    match verified {
        Some((appid, received_at)) => Some(LogEntry {
            delivery,
            appid,
            received_at,
        }),
        None => {
            skipped.unsealed = skipped.unsealed.saturating_add(1);
            None
        }
    }
}

/// Whether `delivery` is a read mark rather than an event.
fn is_mark(delivery: &Delivery) -> bool {
    delivery
        .properties
        .kind()
        .as_ref()
        .is_some_and(|kind| kind.as_str() == MARK_TYPE)
}

/// The time an AMQP `timestamp` names; `None` for one no clock can hold (2^64-1, say).
pub fn received_at(timestamp: u64) -> Option<SystemTime> {
    crate::clock::from_unix_secs(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::seal::Sealed;
    use lapin::types::{AMQPValue, FieldTable};

    fn accept(max_entry_bytes: Option<usize>) -> Accept {
        let toml = "[[merchants]]\nappid = \"100023\"\nsign_key = \"sign-key-0123456789\"\nclient_id = \"772915\"\nclient_secret = \"client-secret-0123456789\"\nuid = \"1404376560\"\n";
        let merchants = crate::settings::Settings::from_toml(toml)
            .unwrap()
            .merchants;
        Accept {
            keys: Keyring::derive(&merchants),
            max_entry_bytes,
        }
    }

    /// An entry as the relay writes it, with `timestamp`, sealed or not.
    fn entry(accept: &Accept, timestamp: u64, sealed: bool, body: &[u8]) -> Delivery {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-weibo-appid".into(),
            AMQPValue::LongString("100023".into()),
        );
        headers.insert(
            "x-weibo-source".into(),
            AMQPValue::LongString("push".into()),
        );
        if sealed {
            let s = Sealed {
                message_id: "e1",
                routing_key: "order.sub_order.201",
                timestamp,
                appid: "100023",
                source: "push",
                body,
            };
            s.write(
                accept
                    .keys
                    .merchant(&AppId::parse("100023").unwrap())
                    .unwrap(),
                &mut headers,
            );
        }
        let mut d = Delivery::mock(
            1,
            "x".into(),
            "order.sub_order.201".into(),
            false,
            body.to_vec(),
        );
        d.properties = BasicProperties::default()
            .with_message_id("e1".into())
            .with_timestamp(timestamp)
            .with_headers(headers);
        d
    }

    #[test]
    fn a_timestamp_no_clock_holds_is_no_time_rather_than_a_panic() {
        assert_eq!(received_at(u64::MAX), None);
        assert_eq!(received_at(0), Some(std::time::UNIX_EPOCH));
    }

    #[test]
    fn only_sealed_entries_of_an_accepted_size_are_returned_and_the_rest_counted() {
        let accept = accept(Some(64));
        let mut skipped = Skipped::default();
        let now = crate::clock::unix_secs();
        let genuine = accepted(&accept, &mut skipped, entry(&accept, now, true, b"{}"));
        assert_eq!(
            genuine.map(|e| (e.appid.to_string(), crate::clock::secs_of(e.received_at))),
            Some(("100023".to_owned(), now))
        );
        // The forgery: an unsealed entry stamped 2^64-1; and one sealed under a
        // timestamp no clock holds (which only the key's holder could make).
        assert!(accepted(
            &accept,
            &mut skipped,
            entry(&accept, u64::MAX, false, b"{}")
        )
        .is_none());
        assert!(accepted(&accept, &mut skipped, entry(&accept, u64::MAX, true, b"{}")).is_none());
        assert!(accepted(
            &accept,
            &mut skipped,
            entry(&accept, now, true, &[b' '; 65])
        )
        .is_none());
        assert_eq!(
            skipped,
            Skipped {
                unsealed: 2,
                oversized: 1
            }
        );
        assert_eq!(skipped.total(), 3);
    }
}
