//! The retry schedule and the queues behind it: one delay queue per distinct delay, named by
//! that delay, each with its own TTL, dead-lettering back to the work queue (no broker plugin).
//!
//! Naming a queue by its delay is what makes a schedule change need no procedure: a new
//! schedule declares new queues, commands already waiting in the old ones still expire back
//! into the work queue, and an old queue nobody declares any more expires by itself.

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::types::AMQPValue;
use rand::Rng;

use crate::amqp::{topology::long_string, QueueSpec, Topology};
use crate::config::{AmqpSettings, WeiboSettings};

/// How long a delay queue outlives its last declaration beyond its own delay: long enough that
/// everything published to it has expired into the work queue before it goes.
pub(crate) const DELAY_QUEUE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Backoff for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    base: Duration,
    max: Duration,
    max_attempts: u32,
}

impl RetryPolicy {
    /// From `weibo.retry_base_ms`, `retry_max_ms`, `max_attempts`.
    pub fn from_settings(weibo: &WeiboSettings) -> Self {
        Self::new(
            Duration::from_millis(weibo.retry_base_ms),
            Duration::from_millis(weibo.retry_max_ms),
            weibo.max_attempts,
        )
    }

    /// First delay, cap on a delay, attempts before dead-lettering.
    pub fn new(base: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            base,
            max: max.max(base),
            max_attempts: max_attempts.max(1),
        }
    }

    /// Attempts before dead-lettering.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after the `attempt`-th failed attempt (1-based): base × 2^(attempt-1), capped.
    /// Any number maps to a delay of the schedule, so a command can never be sent to a delay
    /// queue that does not exist.
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = attempt.clamp(1, self.last_step());
        let factor = 2u32.saturating_pow(step - 1);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay with jitter: between 80 % and 100 % of [`delay`](Self::delay), never more, so
    /// a message never outlives its queue's TTL and no command waits behind a longer delay.
    pub fn jittered_delay(&self, attempt: u32) -> Duration {
        let full = self.delay(attempt);
        // A factor of at most 1 cannot overflow; `full` is the fallback all the same.
        crate::clock::scaled(full, rand::rng().random_range(0.8..=1.0)).unwrap_or(full)
    }

    /// The distinct delays of the schedule: after attempts 1 ..= max_attempts - 1, and always
    /// the first, where a command waiting for a token is parked.
    pub fn delays(&self) -> BTreeSet<Duration> {
        (1..=self.last_step()).map(|s| self.delay(s)).collect()
    }

    fn last_step(&self) -> u32 {
        self.max_attempts.saturating_sub(1).max(1)
    }
}

/// `<fulfilment_queue>.retry.<delay in ms>ms`, the delay queue for `delay`.
pub fn delay_queue(fulfilment_queue: &str, delay: Duration) -> String {
    format!("{fulfilment_queue}.retry.{}ms", delay.as_millis())
}

/// `<fulfilment_queue>.dead`
pub fn dead_queue(fulfilment_queue: &str) -> String {
    format!("{fulfilment_queue}.dead")
}

/// The worker's part: work queue, dead queue, one delay queue per distinct delay, the events
/// exchange its outcomes go to, and the token keeper's exchange and permits queue.
pub fn worker_topology(amqp: &AmqpSettings, policy: &RetryPolicy) -> Topology {
    let fq = &amqp.fulfilment_queue;
    let keeper = crate::keeper::cluster::ClusterNames::new(fq);
    let mut topology = Topology::default()
        .exchange(&amqp.events_exchange)
        .queue(QueueSpec::quorum(fq))
        .queue(QueueSpec::quorum(&dead_queue(fq)))
        // The token keeper's election: one active consumer at a time.
        .queue(
            QueueSpec::quorum(&keeper.keeper_queue)
                .with_argument("x-single-active-consumer", AMQPValue::Boolean(true)),
        )
        // Its announcements, and the platform call permits, which expire in half a second.
        .exchange(&keeper.tokens_exchange)
        .queue(
            QueueSpec::quorum(&keeper.permits_queue)
                .with_argument("x-message-ttl", AMQPValue::LongLongInt(500)),
        );
    for delay in policy.delays() {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        // Quorum like the work queue, so a command waiting for its retry survives the loss of
        // a node; an expired message is dead-lettered at least once (never dropped) straight
        // back to the work queue through the default exchange.
        topology = topology.queue(
            QueueSpec::quorum(&delay_queue(fq, delay))
                .with_argument("x-message-ttl", AMQPValue::LongLongInt(ms(delay)))
                .with_argument("x-dead-letter-exchange", long_string(""))
                .with_argument("x-dead-letter-routing-key", long_string(fq))
                .with_argument("x-dead-letter-strategy", long_string("at-least-once"))
                .with_argument("x-overflow", long_string("reject-publish"))
                .with_argument(
                    "x-expires",
                    AMQPValue::LongLongInt(ms(delay.saturating_add(DELAY_QUEUE_GRACE))),
                ),
        );
    }
    topology
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: u64, max: u64, attempts: u32) -> RetryPolicy {
        RetryPolicy::new(
            Duration::from_millis(base),
            Duration::from_millis(max),
            attempts,
        )
    }

    fn ms(p: &RetryPolicy) -> Vec<u128> {
        p.delays().iter().map(Duration::as_millis).collect()
    }

    #[test]
    fn delays_double_and_cap() {
        let p = policy(5000, 600_000, 8);
        assert_eq!(ms(&p), [5000, 10000, 20000, 40000, 80000, 160000, 320000]);
        let p = policy(5000, 30_000, 6);
        assert_eq!(ms(&p), [5000, 10000, 20000, 30000]);
        assert_eq!(p.delay(100), Duration::from_millis(30_000));
    }

    #[test]
    fn any_attempt_number_maps_to_a_delay_of_the_schedule() {
        let p = policy(100, 400, 4);
        let delays = p.delays();
        for attempt in [0, 1, 2, 3, 4, 5, 30, u32::MAX] {
            assert!(delays.contains(&p.delay(attempt)), "{attempt}");
        }
    }

    #[test]
    fn jitter_stays_within_the_step() {
        let p = policy(1000, 60_000, 5);
        for step in 1..5 {
            for _ in 0..100 {
                let d = p.jittered_delay(step);
                assert!(
                    d <= p.delay(step) && Some(d) >= crate::clock::scaled(p.delay(step), 0.8),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn one_attempt_keeps_the_parking_queue_and_names_say_the_delay() {
        assert_eq!(ms(&policy(1, 1, 1)), [1]);
        assert_eq!(delay_queue("w", Duration::from_secs(5)), "w.retry.5000ms");
        assert_eq!(dead_queue("w"), "w.dead");
    }
}
