//! The retry schedule and the queues behind it: one delay queue per distinct delay, named by
//! that delay, each with its own TTL, dead-lettering back to the work queue (no broker plugin).
//!
//! Naming a queue by its delay is what makes a schedule change need no procedure: a new
//! schedule declares new queues, commands already waiting in the old ones still expire back
//! into the work queue, and an old queue nobody declares any more expires by itself.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;

use crate::settings::WeiboSettings;

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
            weibo.retry_base_ms.get(),
            weibo.retry_max_ms.get(),
            weibo.max_attempts.as_u32(),
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
    fn one_attempt_keeps_the_parking_queue() {
        assert_eq!(ms(&policy(1, 1, 1)), [1]);
    }
}
