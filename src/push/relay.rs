//! Storing a verified push: deduplicate, publish with confirm, remember.

use crate::trace::TraceContext;
use std::sync::Arc;
use std::time::SystemTime;

use super::dedup::Dedup;
use super::{PushError, VerifiedPush};
use crate::amqp::{Broker, Publisher};
use crate::keys::Keyring;
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

/// Publishes verified pushes to the events exchange, sealed (see [`crate::event::seal`]).
pub struct PushRelay {
    publisher: Publisher,
    exchange: String,
    dedup: Dedup,
    metrics: Arc<Metrics>,
    keys: Keyring,
}

impl PushRelay {
    /// A relay publishing to `exchange`, remembering `dedup_capacity` ids, sealing with
    /// `keys`.
    pub fn new(
        broker: Broker,
        exchange: String,
        dedup_capacity: usize,
        metrics: Arc<Metrics>,
        keys: Keyring,
    ) -> Self {
        Self {
            // A channel of the receiver's own: nothing the worker does on its channels can
            // close this one.
            publisher: broker.publisher(),
            exchange,
            dedup: Dedup::new(dedup_capacity),
            metrics,
            keys,
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
        // A verified push names a configured merchant, whose keys the ring holds.
        let keys = self
            .keys
            .merchant(push.appid())
            .ok_or_else(|| PushError::UnknownMerchant(push.appid().clone()))?;
        let publication = push.event().publication(SystemTime::now(), trace, keys);
        let elapsed = publication
            .publish_on(&self.publisher, &self.exchange)
            .await?;
        self.metrics.publish_confirmed(elapsed);
        self.dedup.remember(id);
        Ok(Stored::Published)
    }
}
