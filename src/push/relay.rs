//! Storing a verified push: deduplicate, publish with confirm, remember.

use crate::trace::TraceContext;
use std::sync::Arc;
use std::time::SystemTime;

use super::dedup::Dedup;
use super::{PushError, VerifiedPush};
use crate::amqp::{Broker, Outgoing, Publisher};
use crate::metrics::Metrics;
use crate::metrics::PushOutcome;

/// What happened to an accepted push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Published now and confirmed by the broker.
    Published,
    /// Already stored earlier by this process; not published again.
    Duplicate,
}

impl Stored {
    /// The metrics outcome label.
    pub fn outcome(self) -> PushOutcome {
        match self {
            Self::Published => PushOutcome::Accepted,
            Self::Duplicate => PushOutcome::Duplicate,
        }
    }
}

/// Publishes verified pushes to the events exchange.
pub struct PushRelay {
    publisher: Publisher,
    exchange: String,
    dedup: Dedup,
    metrics: Arc<Metrics>,
}

impl PushRelay {
    /// A relay publishing to `exchange`, remembering `dedup_capacity` ids.
    pub fn new(
        broker: Broker,
        exchange: String,
        dedup_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            // A channel of the receiver's own: nothing the worker does on its channels can
            // close this one.
            publisher: broker.publisher(),
            exchange,
            dedup: Dedup::new(dedup_capacity),
            metrics,
        }
    }

    /// The publisher, to close once the server has stopped.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Stores `push` unless it is a known duplicate. Ok means the broker has it.
    pub async fn store(
        &self,
        push: &VerifiedPush,
        trace: &TraceContext,
    ) -> Result<Stored, PushError> {
        let id = push.event_id();
        if self.dedup.contains(id) {
            return Ok(Stored::Duplicate);
        }
        let received_at = SystemTime::now();
        let event = push.event();
        let body = event.envelope(received_at);
        let routing_key = event.routing_key();
        let elapsed = self
            .publisher
            .publish(Outgoing {
                exchange: &self.exchange,
                routing_key: &routing_key,
                body: &body,
                properties: event.properties(received_at, trace),
            })
            .await?;
        self.metrics.publish_confirmed(elapsed);
        self.dedup.remember(id);
        Ok(Stored::Published)
    }
}
