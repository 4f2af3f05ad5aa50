//! The publisher of merchant events: takes the store's outbox on a lease, publishes each row
//! to the events exchange with confirms, and marks it published. Any process of the
//! deployment may run it at once; the lease keeps two from taking the same rows, and the rows
//! of a process that died come back when their lease ends (at least once: `message_id` is the
//! row id, for consumers to drop a repeat).

use std::time::{Duration, SystemTime};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;

use super::metrics::ProviderMetrics;
use crate::amqp::{Outgoing, PublishError, Publisher};
use crate::provider::store::{OutboxRow, Store, StoreError};

/// Rows one round takes.
const BATCH: i64 = 100;
/// How long taken rows are this process's: far longer than a round of confirms.
const LEASE: Duration = Duration::from_secs(60);
/// Time between looks at an empty outbox: an event reaches the broker within about this.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait after a failed round (broker or store away).
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("broker: {0}")]
    Publish(#[from] PublishError),
}

/// Publishes the outbox until stopped.
pub struct EventPublisher {
    /// The store holding the outbox.
    pub store: Store,
    /// A confirm channel of its own.
    pub publisher: Publisher,
    /// `amqp.events_exchange`.
    pub exchange: String,
    /// Counts what is published.
    pub metrics: ProviderMetrics,
}

impl EventPublisher {
    /// Rounds until `stop`: at once after a full one, after [`POLL`] after a short one, backing
    /// off after a failure (each failure logged once until a round succeeds again).
    pub async fn run(self, stop: CancellationToken) {
        let mut pause = POLL;
        let mut failing = false;
        loop {
            let wait = match self.round().await {
                Ok(n) => {
                    if failing {
                        tracing::info!("merchant events publish again");
                        failing = false;
                    }
                    pause = POLL;
                    if usize::try_from(BATCH).is_ok_and(|full| n >= full) {
                        Duration::ZERO
                    } else {
                        POLL
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "merchant events not published; retrying");
                        failing = true;
                    }
                    pause = pause.saturating_mul(2).min(MAX_PAUSE);
                    pause
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: rows in order, stopping at the first that is not confirmed (so a merchant's
    /// events keep their order); the rest are given back at once.
    #[tracing::instrument(skip(self), level = "debug")]
    async fn round(&self) -> Result<usize, RoundError> {
        let rows = self
            .store
            .take_outbox(BATCH, LEASE, SystemTime::now())
            .await?;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            match self.publisher.publish(message(&self.exchange, row)).await {
                Ok(_) => published.push(row.id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.store
            .confirm_outbox(&published, SystemTime::now())
            .await?;
        self.metrics.published(published.len());
        if let Some(e) = failure {
            let rest: Vec<i64> = rows
                .iter()
                .map(|r| r.id)
                .filter(|id| !published.contains(id))
                .collect();
            self.store.release_outbox(&rest).await?;
            return Err(e.into());
        }
        Ok(published.len())
    }
}

/// A merchant event as published: persistent JSON, `message_id` the outbox row's id, `type`
/// the routing key, header `x-weibo-merchant` the merchant_ref. Mandatory: with no queue bound
/// for it the row stays in the outbox until one is.
fn message<'a>(exchange: &'a str, row: &'a OutboxRow) -> Outgoing<'a> {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-weibo-merchant"),
        AMQPValue::LongString(LongString::from(row.merchant_ref.as_str())),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(row.id.to_string().as_str().into())
        .with_type(row.routing_key.as_str().into())
        .with_timestamp(crate::clock::unix_secs())
        .with_headers(headers);
    Outgoing {
        exchange,
        routing_key: &row.routing_key,
        body: row.body.as_bytes(),
        properties,
    }
}
