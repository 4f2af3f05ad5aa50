//! The platform's rate limit, held by the whole deployment rather than by each process.
//!
//! The token keeper ([`crate::keeper::cluster`]) issues `weibo.rate_limit_per_sec` permits a
//! second into the queue `<fulfilment_queue>.permits`; every worker takes one before each
//! platform call. Permits expire after half a second in the queue and are dropped after half a
//! second unused in a worker, so an idle deployment cannot save up a burst: over any 10 s, the
//! calls of all processes together stay within the rate, plus at most half a second's worth
//! and a few held by workers. Without a keeper there are no permits, and calls wait.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use std::collections::VecDeque;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::amqp::{Broker, Link};

/// How long a permit lives, in the queue and then in a worker.
const PERMIT_LIFE: Duration = Duration::from_millis(500);
/// How often the issuer tops the queue up.
const ISSUE_EVERY: Duration = Duration::from_millis(100);
/// Permits a worker holds ahead (unacknowledged), so a call rarely waits for a round trip.
const HELD_AHEAD: u16 = 2;

/// Issues permits while it lives (the keeper holds one while it leads).
pub struct PermitIssuer {
    stop: DropGuard,
    task: tokio::task::JoinHandle<()>,
}

impl PermitIssuer {
    /// Publishes `per_sec` permits a second to `queue` on `channel` until dropped.
    pub fn start(channel: Channel, queue: String, per_sec: u32) -> Self {
        let stop = CancellationToken::new();
        let task_stop = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ISSUE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let per_tick = f64::from(per_sec) * ISSUE_EVERY.as_secs_f64();
            let mut credit = 0.0;
            let expiration = PERMIT_LIFE.as_millis().to_string();
            loop {
                tokio::select! {
                    _ = task_stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                credit += per_tick;
                while credit >= 1.0 {
                    credit -= 1.0;
                    // Not confirmed: a lost permit only slows calls down, never speeds them up.
                    let sent = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            b"",
                            BasicProperties::default().with_expiration(expiration.as_str().into()),
                        )
                        .await;
                    if let Err(error) = sent {
                        tracing::warn!(%error, "permits not issued");
                        return;
                    }
                }
            }
            let _ = channel.close(200, "no longer the keeper".into()).await;
        });
        Self {
            stop: stop.drop_guard(),
            task,
        }
    }

    /// Stops issuing and waits until its channel is closed.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

/// Why a call got no permit.
#[derive(Debug, thiserror::Error)]
#[error("no platform call permit within {0:?} (is a token keeper running?)")]
pub struct NoPermit(pub Duration);

/// A worker's supply of permits; cheap to clone.
#[derive(Clone)]
pub struct Permits {
    takers: mpsc::UnboundedSender<oneshot::Sender<Delivery>>,
    wait: Duration,
    _stop: std::sync::Arc<DropGuard>,
}

impl Permits {
    /// Takes permits from `queue` on every broker link in turn; [`take`](Self::take) waits up
    /// to `wait` for one.
    pub fn start(broker: Broker, queue: String, wait: Duration) -> Self {
        let (takers, mut waiting) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            let mut links = broker.subscribe();
            loop {
                let link = tokio::select! {
                    _ = task_stop.cancelled() => return,
                    link = links.wait_for(Option::is_some) => match link {
                        Ok(link) => link.clone(),
                        Err(_) => return,
                    },
                };
                let Some(link) = link else { continue };
                if let Err(error) = supply(&link, &queue, &mut waiting, &task_stop).await {
                    tracing::warn!(%error, "permit supply failed; starting again");
                }
                tokio::select! {
                    _ = task_stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Self {
            takers,
            wait,
            _stop: std::sync::Arc::new(stop.drop_guard()),
        }
    }

    /// Takes one permit (one platform call), waiting for it up to the configured time.
    pub async fn take(&self) -> Result<(), NoPermit> {
        let (tx, rx) = oneshot::channel();
        if self.takers.send(tx).is_err() {
            return Err(NoPermit(Duration::ZERO));
        }
        match tokio::time::timeout(self.wait, rx).await {
            Ok(Ok(permit)) => {
                // Spent: the broker forgets it. An ack that fails (link lost) returns it.
                let _ = permit.ack(BasicAckOptions::default()).await;
                Ok(())
            }
            _ => Err(NoPermit(self.wait)),
        }
    }
}

/// Hands permits from the queue to callers, first come first served. A permit nobody takes
/// within its life is acknowledged and dropped: none is saved up for a burst, and none stays
/// unacknowledged long enough to meet the broker's consumer timeout.
async fn supply(
    link: &Link,
    queue: &str,
    takers: &mut mpsc::UnboundedReceiver<oneshot::Sender<Delivery>>,
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
    let mut waiting: VecDeque<oneshot::Sender<Delivery>> = VecDeque::new();
    let mut tick = tokio::time::interval(ISSUE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = channel.close(200, "worker stopping".into()).await;
                return Ok(());
            }
            delivery = consumer.next() => match delivery {
                Some(delivery) => held.push_back((Instant::now(), delivery?)),
                None => return Ok(()),
            },
            Some(taker) = takers.recv() => waiting.push_back(taker),
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
            let Some(taker) = waiting.pop_front() else {
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
