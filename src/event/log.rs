//! Reading the event log, the stream `<events_queue>.log`, over AMQP 0-9-1 (no plugin): a
//! consumer with an `x-stream-offset`, a bounded prefetch, and each message acknowledged as it
//! is read, so memory stays bounded whatever the log's size.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, Consumer};

/// Messages read ahead; a stream consumer needs a prefetch.
const PREFETCH: u16 = 500;

/// Where reading starts.
#[derive(Debug, Clone, Copy)]
pub enum Offset {
    /// Around this time: from the chunk holding it, so a few earlier events may come first.
    Since(SystemTime),
    /// Only events published from now on.
    Next,
}

/// An open reading of the log.
pub struct LogReader {
    channel: Channel,
    consumer: Consumer,
}

impl LogReader {
    /// Starts reading `stream` at `offset`.
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
            Offset::Since(at) => AMQPValue::Timestamp(unix_secs(at)),
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
        Ok(Self { channel, consumer })
    }

    /// The next event, acknowledged; `None` when nothing came for `idle` (the end of the log,
    /// as far as a reader can tell) or the consumer ended.
    pub async fn next(&mut self, idle: Option<Duration>) -> Result<Option<Delivery>, lapin::Error> {
        let next = self.consumer.next();
        let delivery = match idle {
            Some(idle) => match tokio::time::timeout(idle, next).await {
                Ok(delivery) => delivery,
                Err(_) => return Ok(None),
            },
            None => next.await,
        };
        match delivery {
            Some(Ok(delivery)) => {
                // Credit for the stream, not a removal: a stream keeps what it holds.
                delivery.ack(BasicAckOptions::default()).await?;
                Ok(Some(delivery))
            }
            Some(Err(error)) => Err(error),
            None => Ok(None),
        }
    }

    /// Stops reading.
    pub async fn close(self) {
        let _ = self.channel.close(200, "event log read".into()).await;
    }
}

/// When the relay received the event (the `timestamp` property), if it says.
pub fn received_at(delivery: &Delivery) -> Option<SystemTime> {
    delivery
        .properties
        .timestamp()
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
