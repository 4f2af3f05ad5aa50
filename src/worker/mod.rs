//! The fulfilment worker: consumes commands, calls the order interfaces, and gives every
//! command a confirmed next home (outcome, delay queue, or dead queue) before acking it.

mod attempt;
pub mod backlog;
mod command;
mod decide;
pub mod dlq;
mod headers;
mod metrics;
mod outcome;
pub mod retry;
mod settle;

use crate::trace::TraceContext;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::amqp::{Broker, Link, Names, Publisher};
use crate::permits::Permits;
use crate::settings::{Merchants, Settings};
use crate::supervise::{Task, Tasks};
use crate::telemetry::LogLimit;
use crate::tokens::Tokens;
use crate::weibo::WeiboClient;

pub use attempt::Attempt;
pub use command::{Command, InterfaceCommand, Verdict};
pub use decide::{admit, next_after, Admitted, DeadCause, Next};
pub use headers::{seal as seal_attempts, ATTEMPTS, DEATH_REASON, LAST_CODE, SEALED_ATTEMPTS};
pub use metrics::WorkerMetrics;
pub use outcome::{Outcome, OutcomeBody};
pub use retry::RetryPolicy;

/// How long a stopping worker waits at most for in-flight commands, in all.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Opening the consumer (channel, prefetch, consume) must not take longer than this.
const CONSUME_SETUP: Duration = Duration::from_secs(10);
/// Dead-letter log lines a second, after a burst of as many (every one is counted).
const DEAD_LOG_PER_SEC: std::num::NonZeroU32 = std::num::NonZeroU32::new(10).unwrap();

/// Everything one worker process needs; shared by its in-flight commands.
pub struct Worker {
    broker: Broker,
    publisher: Publisher,
    tokens: Tokens,
    client: WeiboClient,
    merchants: Merchants,
    /// The catalogue a call command's interface must be in.
    interfaces: std::collections::BTreeMap<String, crate::settings::InterfaceSpec>,
    policy: RetryPolicy,
    permits: Permits,
    metrics: WorkerMetrics,
    names: Names,
    prefetch: u16,
    concurrency: usize,
    /// Caps dead-letter log lines: anyone who can publish commands can send bad ones.
    dead_log: LogLimit,
}

impl Worker {
    /// A worker for `settings`, using the process's broker connection and token source.
    pub fn new(
        settings: &Settings,
        names: &Names,
        broker: Broker,
        tokens: Tokens,
        permits: Permits,
        client: WeiboClient,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            // Channels of the worker's own: nothing it publishes can close the receiver's.
            publisher: broker.publisher(),
            broker,
            tokens,
            client,
            merchants: settings.signers(),
            interfaces: settings.gateway.interfaces.clone(),
            policy: RetryPolicy::from_settings(&settings.weibo),
            permits,
            metrics,
            names: names.clone(),
            prefetch: settings.worker.prefetch.as_u16(),
            concurrency: settings.worker.concurrency.as_usize(),
            dead_log: LogLimit::per_second(DEAD_LOG_PER_SEC),
        }
    }

    /// Consumes as a task of `tasks` until they stop, on every broker link in turn.
    pub fn start(self, tasks: &Tasks) {
        let worker = Arc::new(self);
        tasks.spawn(Task::Worker, move |stop| worker.clone().run(stop));
    }

    /// Consumes until `stop` is cancelled, resuming on every new broker link; then waits for
    /// the commands in flight to be settled, within one grace period in all.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let in_flight = Arc::new(Semaphore::new(self.concurrency));
        let grace = Arc::new(Grace::default());
        let each = |link: Link| {
            let (worker, in_flight, stop, grace) =
                (self.clone(), in_flight.clone(), stop.clone(), grace.clone());
            async move {
                let ended = worker.consume(&link, &in_flight, &stop, &grace).await;
                if stop.is_cancelled() {
                    return;
                }
                match ended {
                    Ok(()) => tracing::warn!("fulfilment consumer cancelled; resuming"),
                    Err(error) => tracing::warn!(%error, "fulfilment consumer failed; resuming"),
                }
                // Its channel failed, or the broker cancelled it because the queue was
                // deleted: the topology is declared again (on a channel of its own) before
                // consuming resumes. The connection, shared with the receiver, stays.
                if link.is_up() {
                    if let Err(error) = worker.broker.declare_topology().await {
                        tracing::warn!(%error, "topology not declared again");
                    }
                }
            }
        };
        self.broker.on_each_link(&stop, each).await;
        // Whatever the consumer already waited for counts: the grace is waited once.
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let _all = tokio::time::timeout_at(grace.deadline(), in_flight.acquire_many(all)).await;
        self.publisher.close().await;
        tracing::info!("worker stopped; in-flight commands settled");
    }

    async fn consume(
        self: &Arc<Self>,
        link: &Link,
        in_flight: &Arc<Semaphore>,
        stop: &CancellationToken,
        grace: &Grace,
    ) -> Result<(), String> {
        // A broker that never answers must not hold the worker here: the resume loop retries.
        let opened = tokio::time::timeout(CONSUME_SETUP, self.open_consumer(link)).await;
        let (channel, mut consumer) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("no consumer within {CONSUME_SETUP:?}")),
        };
        tracing::info!(queue = %self.names.fulfilment(), prefetch = self.prefetch, "consuming fulfilment commands");
        let ended = self
            .deliver(&channel, &mut consumer, in_flight, stop, grace)
            .await;
        // The consumer is gone (cancelled by the broker, or failed): so is its channel, or a
        // channel would be left open on the shared connection at every resume.
        if channel.status().connected() {
            let _ = channel.close(200, "consumer ended".into()).await;
        }
        ended
    }

    async fn open_consumer(&self, link: &Link) -> Result<(Channel, Consumer), lapin::Error> {
        let channel = link.connection().create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.names.fulfilment().into(),
                "weibo-relay-worker".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    /// Hands each delivery to a task of its own until the consumer ends or `stop`.
    async fn deliver(
        self: &Arc<Self>,
        channel: &Channel,
        consumer: &mut Consumer,
        in_flight: &Arc<Semaphore>,
        stop: &CancellationToken,
        grace: &Grace,
    ) -> Result<(), String> {
        loop {
            let delivery = tokio::select! {
                _ = stop.cancelled() => {
                    // No new deliveries; let the ones in flight settle on this channel, then
                    // close it, which returns the unstarted prefetched commands to the queue.
                    let _ = channel
                        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                        .await;
                    let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
                    let _settled =
                        tokio::time::timeout_at(grace.deadline(), in_flight.acquire_many(all))
                            .await;
                    let _ = channel.close(200, "worker stopping".into()).await;
                    return Ok(());
                }
                delivery = consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => return Err(error.to_string()),
                None => return Ok(()),
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return Ok(());
            };
            let worker = self.clone();
            // The producer's trace continues here: the worker's spans carry its id and the
            // outcome names this hop as its parent.
            let parent = TraceContext::from_amqp(&delivery.properties);
            let mut trace = TraceContext::next_hop(parent.as_ref());
            let span = tracing::info_span!("fulfil", trace_id = tracing::field::Empty);
            #[cfg(feature = "otel")]
            if let Some(parent) = &parent {
                crate::trace::otel::set_parent(&span, parent);
            }
            trace.adopt_span_ids(&span);
            span.record("trace_id", trace.trace_id().as_str());
            tokio::spawn(
                async move {
                    let next = worker.decide(&delivery).await;
                    worker.settle(&delivery, next, &trace).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

/// When a stopping worker stops waiting for its commands in flight: [`STOP_GRACE`] after it
/// first began to wait, however many places wait.
#[derive(Default)]
struct Grace(std::sync::OnceLock<tokio::time::Instant>);

impl Grace {
    fn deadline(&self) -> tokio::time::Instant {
        *self
            .0
            .get_or_init(|| crate::clock::Later::later(tokio::time::Instant::now(), STOP_GRACE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_grace_is_counted_from_the_first_wait_whoever_waits_after() {
        let grace = Grace::default();
        let first = grace.deadline();
        assert_eq!(
            first,
            crate::clock::Later::later(tokio::time::Instant::now(), STOP_GRACE)
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        // The consumer waited 20 s of it; the worker's own wait gets the 10 s left, not 30.
        assert_eq!(grace.deadline(), first);
        assert_eq!(
            first.saturating_duration_since(tokio::time::Instant::now()),
            Duration::from_secs(10)
        );
    }
}
