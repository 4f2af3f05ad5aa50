//! The retry schedule and the queues behind it: one delay queue per step, each with its own
//! TTL, dead-lettering back to the work queue (no broker plugin needed).

use std::time::Duration;

use lapin::types::AMQPValue;
use rand::Rng;

use crate::amqp::{topology::long_string, QueueSpec, Topology};
use crate::config::{AmqpSettings, WeiboSettings};

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
        Self {
            base: Duration::from_millis(weibo.retry_base_ms),
            max: Duration::from_millis(weibo.retry_max_ms.max(weibo.retry_base_ms)),
            max_attempts: weibo.max_attempts,
        }
    }

    /// Attempts before dead-lettering.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after the `attempt`-th failed attempt (1-based): base × 2^(attempt-1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay with jitter: between 80 % and 100 % of [`delay`](Self::delay), never more, so
    /// a message never outlives its queue's TTL and no command waits behind a longer delay.
    pub fn jittered_delay(&self, attempt: u32) -> Duration {
        let full = self.delay(attempt);
        full.mul_f64(rand::rng().random_range(0.8..=1.0))
    }

    /// The steps that have a delay queue: after attempts 1 ..= max_attempts - 1, and always
    /// step 1, where a command waiting for a token is parked.
    pub fn steps(&self) -> impl Iterator<Item = u32> {
        1..self.max_attempts.max(2)
    }
}

/// `<fulfilment_queue>.retry.<n>`
pub fn retry_queue(fulfilment_queue: &str, attempt: u32) -> String {
    format!("{fulfilment_queue}.retry.{attempt}")
}

/// `<fulfilment_queue>.dead`
pub fn dead_queue(fulfilment_queue: &str) -> String {
    format!("{fulfilment_queue}.dead")
}

/// The worker's part: work queue, dead queue, one delay queue per step, and the events
/// exchange its outcomes go to.
pub fn worker_topology(amqp: &AmqpSettings, policy: &RetryPolicy) -> Topology {
    let fq = &amqp.fulfilment_queue;
    let mut topology = Topology::default()
        .exchange(&amqp.events_exchange)
        .queue(QueueSpec::quorum(fq))
        .queue(QueueSpec::quorum(&dead_queue(fq)));
    for step in policy.steps() {
        let ttl = i64::try_from(policy.delay(step).as_millis()).unwrap_or(i64::MAX);
        // Classic queues: a per-queue TTL expires from the head promptly, and the message is
        // dead-lettered through the default exchange straight back to the work queue.
        topology = topology.queue(
            QueueSpec::classic(&retry_queue(fq, step))
                .with_argument("x-message-ttl", AMQPValue::LongLongInt(ttl))
                .with_argument("x-dead-letter-exchange", long_string(""))
                .with_argument("x-dead-letter-routing-key", long_string(fq)),
        );
    }
    topology
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: u64, max: u64, attempts: u32) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(base),
            max: Duration::from_millis(max),
            max_attempts: attempts,
        }
    }

    #[test]
    fn delays_double_and_cap() {
        let p = policy(5000, 600_000, 8);
        let ms: Vec<u128> = p.steps().map(|s| p.delay(s).as_millis()).collect();
        assert_eq!(ms, [5000, 10000, 20000, 40000, 80000, 160000, 320000]);
        let p = policy(5000, 30_000, 6);
        let ms: Vec<u128> = p.steps().map(|s| p.delay(s).as_millis()).collect();
        assert_eq!(ms, [5000, 10000, 20000, 30000, 30000]);
        assert_eq!(p.delay(100), Duration::from_millis(30_000));
    }

    #[test]
    fn jitter_stays_within_the_step() {
        let p = policy(1000, 60_000, 5);
        for step in p.steps() {
            for _ in 0..100 {
                let d = p.jittered_delay(step);
                assert!(
                    d <= p.delay(step) && d >= p.delay(step).mul_f64(0.8),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn one_attempt_keeps_the_parking_queue() {
        assert_eq!(policy(1, 1, 1).steps().collect::<Vec<_>>(), [1]);
        assert_eq!(retry_queue("w", 3), "w.retry.3");
        assert_eq!(dead_queue("w"), "w.dead");
    }
}
