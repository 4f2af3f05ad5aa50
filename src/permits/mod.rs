//! The platform's rate limit, held by the whole deployment rather than by each process.
//!
//! The token keeper ([`crate::keeper::election`]) issues `weibo.rate_limit_per_sec` permits a
//! second into the queue `<fulfilment_queue>.permits`; every worker takes one before each
//! platform call. Permits expire after half a second in the queue and are dropped after half a
//! second unused in a worker, so an idle deployment cannot save up a burst: over any 10 s, the
//! calls of all processes together stay within the rate, plus at most half a second's worth
//! and a few held by workers. Without a keeper there are no permits, and calls wait.
//!
//! Anyone allowed to publish to the default exchange can put messages in the permits queue,
//! so a permit is stamped by its issuer ([`crate::keeper::stamp`]): a worker drops, and counts
//! by reason, a message that does not verify, is older than a permit's life (allowing the
//! processes' clocks [`MAX_CLOCK_SKEW`] apart), or repeats one it already took.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::amqp::{Broker, Link};
use crate::keeper::stamp::{Kind, Rejected, Seen, Stamp, Stamper, Verifier, Window};
use crate::keys::Keyring;
use crate::metrics::Label;
use crate::supervise::{Task, Tasks};

/// How long a permit lives, in the queue (its `x-message-ttl`) and then in a worker.
pub(crate) const PERMIT_LIFE: Duration = Duration::from_millis(500);
/// How far apart the issuer's and a worker's clocks may be for its permits to pass.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(1);
/// The dates a permit may carry, by the taking worker's clock.
const PERMIT_WINDOW: Window = Window {
    max_age: PERMIT_LIFE.saturating_add(MAX_CLOCK_SKEW),
    max_ahead: MAX_CLOCK_SKEW,
};
/// Permits a worker remembers having taken (a second's worth at 40,000 a second).
const REMEMBERED: usize = 100_000;
/// How often the issuer tops the queue up.
const ISSUE_EVERY: Duration = Duration::from_millis(100);
/// A permit publish (or the channel's close) that takes longer than this is given up: the
/// broker is not taking them, and a missing permit only slows calls down.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Permits a worker holds ahead (unacknowledged), so a call rarely waits for a round trip.
const HELD_AHEAD: u16 = 2;

/// Permits a worker refused, by reason (`weibo_relay_permits_rejected_total{reason}`).
#[derive(Clone)]
pub struct PermitMetrics {
    rejected: IntCounterVec,
}

impl PermitMetrics {
    /// The counters, registered in `registry`, every reason at 0.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rejected = IntCounterVec::new(
            Opts::new(
                "weibo_relay_permits_rejected_total",
                "Messages in the permits queue a worker dropped: forged (not stamped by the \
                 deployment), stale (older than a permit's life) or repeated (a copy)",
            ),
            &["reason"],
        )?;
        for reason in Rejected::all() {
            rejected.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { rejected })
    }

    /// Refused so far for `reason`.
    pub fn rejected(&self, reason: Rejected) -> u64 {
        self.rejected.with_label_values(&[reason.as_str()]).get()
    }
}

/// What a worker checks each permit with.
struct PermitCheck {
    verifier: Verifier,
    seen: Seen,
    metrics: PermitMetrics,
}

impl PermitCheck {
    /// `Ok` for a permit this worker may spend; anything else is counted.
    fn check(&mut self, body: &[u8]) -> Result<(), Rejected> {
        let checked = self.read(body);
        if let Err(reason) = checked {
            self.metrics
                .rejected
                .with_label_values(&[reason.as_str()])
                .inc();
        }
        checked
    }

    fn read(&mut self, body: &[u8]) -> Result<(), Rejected> {
        if body.len() > crate::keeper::stamp::MAX_MESSAGE_BYTES {
            return Err(Rejected::Forged);
        }
        let stamp: Stamp = serde_json::from_slice(body).map_err(|_| Rejected::Forged)?;
        let now_ms = crate::clock::unix_millis();
        self.verifier
            .check(Kind::Permit, &stamp, PERMIT_WINDOW, now_ms)?;
        if self.seen.first(&stamp, now_ms) {
            Ok(())
        } else {
            Err(Rejected::Repeated)
        }
    }
}

/// Issues permits while it lives (the keeper holds one while it leads).
pub struct PermitIssuer {
    tasks: Tasks,
}

impl PermitIssuer {
    /// Publishes `per_sec` permits a second to `queue` on `channel`, each stamped by
    /// `stamper`, as a task of a group of its own under `tasks`, until stopped or dropped.
    pub fn start(
        channel: Channel,
        queue: String,
        per_sec: u32,
        stamper: Arc<Stamper>,
        tasks: &Tasks,
    ) -> Self {
        let tasks = tasks.child();
        tasks.spawn(Task::PermitIssuer, move |stop| {
            issue(
                channel.clone(),
                queue.clone(),
                per_sec,
                stamper.clone(),
                stop,
            )
        });
        Self { tasks }
    }

    /// Stops issuing and waits until its channel is closed.
    pub async fn stop(self) {
        self.tasks.shutdown().await;
    }
}

impl Drop for PermitIssuer {
    fn drop(&mut self) {
        self.tasks.stop();
    }
}

/// The issuer's loop: `per_sec` permits a second, a tick's worth at a time, until `stop`.
/// The permits queue's `x-message-ttl` ([`PERMIT_LIFE`]) drops those nobody takes.
async fn issue(
    channel: Channel,
    queue: String,
    per_sec: u32,
    stamper: Arc<Stamper>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ISSUE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = f64::from(per_sec) * ISSUE_EVERY.as_secs_f64();
    let mut credit = 0.0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        credit += per_tick;
        while credit >= 1.0 {
            credit -= 1.0;
            let permit =
                serde_json::to_vec(&stamper.stamp(Kind::Permit)).expect("a stamp serializes");
            // Not confirmed: a lost permit only slows calls down, never speeds them up.
            let sent = channel.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &permit,
                BasicProperties::default(),
            );
            // Bounded, so that stopping never waits on a link that died.
            match tokio::time::timeout(SEND_TIMEOUT, sent).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "permits not issued");
                    return;
                }
                Err(_) => {
                    tracing::warn!("permits not issued: the broker took none for 1 s");
                    return;
                }
            }
        }
    }
    let closing = channel.close(200, "no longer the keeper".into());
    let _ = tokio::time::timeout(SEND_TIMEOUT, closing).await;
}

/// Why a call got no permit.
#[derive(Debug, thiserror::Error)]
#[error("no platform call permit within {0:?} (is a token keeper running?)")]
pub struct NoPermit(pub Duration);

mod share;

pub use share::Taker;
use share::{Waiter, Waiting};

/// A worker's supply of permits; cheap to clone.
#[derive(Clone)]
pub struct Permits {
    takers: mpsc::UnboundedSender<Waiter>,
    wait: Duration,
}

/// What the supply keeps across broker links: the callers waiting, and what it checks
/// permits with (the stamps it already took among them).
struct Supply {
    incoming: mpsc::UnboundedReceiver<Waiter>,
    waiting: Waiting,
    check: PermitCheck,
}

impl Permits {
    /// Takes permits from `queue` on every broker link in turn, as a task of `tasks`,
    /// spending only those stamped with a key of `keyring` (the rest counted in `metrics`);
    /// [`take`](Self::take) waits up to `wait` for one; gateway calls get `share` of the
    /// permits while fulfilment waits too.
    pub fn start(
        broker: Broker,
        queue: String,
        wait: Duration,
        share: f64,
        keyring: Keyring,
        metrics: PermitMetrics,
        tasks: &Tasks,
    ) -> Self {
        let check = PermitCheck {
            verifier: Verifier::new(keyring, &queue),
            seen: Seen::new(
                PERMIT_WINDOW
                    .max_age
                    .saturating_add(PERMIT_WINDOW.max_ahead),
                REMEMBERED,
            ),
            metrics,
        };
        let (takers, incoming) = mpsc::unbounded_channel();
        // Kept across a restart after a panic: the callers waiting, and the stamps taken.
        let supply = Arc::new(tokio::sync::Mutex::new(Supply {
            incoming,
            waiting: Waiting::new(share),
            check,
        }));
        tasks.spawn(Task::Permits, move |stop| {
            let (broker, queue, supply) = (broker.clone(), queue.clone(), supply.clone());
            async move {
                let each = |link: Link| {
                    let (queue, supply, stop) = (queue.clone(), supply.clone(), stop.clone());
                    async move {
                        let mut supply = supply.lock().await;
                        let Supply {
                            incoming,
                            waiting,
                            check,
                        } = &mut *supply;
                        let served = serve(&link, &queue, incoming, waiting, check, &stop).await;
                        if let Err(error) = served {
                            tracing::warn!(%error, "permit supply failed; starting again");
                        }
                    }
                };
                broker.on_each_link(&stop, each).await;
            }
        });
        Self { takers, wait }
    }

    /// Takes one permit (one platform call) for fulfilment, waiting for it up to the
    /// configured time.
    pub async fn take(&self) -> Result<(), NoPermit> {
        self.take_within(Taker::Fulfilment, self.wait).await
    }

    /// Takes one permit for `taker`, waiting for it up to `wait`.
    pub async fn take_within(&self, taker: Taker, wait: Duration) -> Result<(), NoPermit> {
        let (tx, rx) = oneshot::channel();
        if self.takers.send((taker, tx)).is_err() {
            return Err(NoPermit(Duration::ZERO));
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(permit)) => {
                // Spent: the broker forgets it. An ack that fails (link lost) returns it.
                let _ = permit.ack(BasicAckOptions::default()).await;
                Ok(())
            }
            _ => Err(NoPermit(wait)),
        }
    }
}

/// Hands permits from the queue to callers, first come first served in each line
/// ([`Waiting`]). A permit nobody takes
/// within its life is acknowledged and dropped: none is saved up for a burst, and none stays
/// unacknowledged long enough to meet the broker's consumer timeout.
async fn serve(
    link: &Link,
    queue: &str,
    takers: &mut mpsc::UnboundedReceiver<Waiter>,
    waiting: &mut Waiting,
    check: &mut PermitCheck,
    stop: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = link.connection().create_channel().await?;
    channel
        .basic_qos(HELD_AHEAD, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "weibo-relay-permits".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut held: VecDeque<(Instant, Delivery)> = VecDeque::new();
    let mut tick = tokio::time::interval(ISSUE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = channel.close(200, "worker stopping".into()).await;
                return Ok(());
            }
            delivery = consumer.next() => match delivery {
                Some(delivery) => {
                    let delivery = delivery?;
                    if check.check(&delivery.data).is_ok() {
                        held.push_back((Instant::now(), delivery));
                    } else {
                        // Taken off the queue, never spent.
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                    }
                }
                None => return Ok(()),
            },
            Some(taker) = takers.recv() => waiting.push(taker),
            _ = tick.tick() => {}
        }
        while held
            .front()
            .is_some_and(|(at, _)| at.elapsed() > PERMIT_LIFE)
        {
            if let Some((_, stale)) = held.pop_front() {
                let _ = stale.ack(BasicAckOptions::default()).await;
            }
        }
        while !held.is_empty() {
            let Some(taker) = waiting.next() else {
                break;
            };
            let Some((at, permit)) = held.pop_front() else {
                break;
            };
            if let Err(permit) = taker.send(permit) {
                // That caller gave up waiting: the permit goes to the next one.
                held.push_front((at, permit));
            }
        }
    }
}
