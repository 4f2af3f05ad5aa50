//! Reading the event log, the stream `<events_queue>.log`, over AMQP 0-9-1 (no plugin): a
//! consumer with an `x-stream-offset`, a bounded prefetch, and each message acknowledged as it
//! is read, so memory stays bounded whatever the log's size. AMQP 0-9-1 cannot tell a reader
//! where a stream ends, so a reading that needs an end appends a mark and reads up to it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};

use crate::amqp::{Outgoing, PublishError, Publisher};

/// Messages read ahead; a stream consumer needs a prefetch.
const PREFETCH: u16 = 500;
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

/// An open reading of the log.
pub struct LogReader {
    channel: Channel,
    consumer: Consumer,
    /// The mark that ends this reading, when it has an end.
    end: Option<String>,
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
        let mut reader = Self::open(connection, stream, Offset::Since(since)).await?;
        reader.end = Some(mark);
        Ok(reader)
    }

    /// Reads `stream` from `offset` on, with no end.
    pub async fn open(
        connection: &Connection,
        stream: &str,
        offset: Offset,
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
        })
    }

    /// The next event, acknowledged; `None` at this reading's mark or when the consumer
    /// ended. Marks (this reading's and other readers') are never returned.
    pub async fn next(&mut self) -> Result<Option<Delivery>, LogError> {
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
                return Ok(Some(delivery));
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

    /// Stops reading.
    pub async fn close(self) {
        let _ = self.channel.close(200, "event log read".into()).await;
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

/// When the relay received the event (the `timestamp` property), if it says.
pub fn received_at(delivery: &Delivery) -> Option<SystemTime> {
    delivery
        .properties
        .timestamp()
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}
