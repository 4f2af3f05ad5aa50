//! When merchants are refreshed, and how fast.

use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::clock::Later;
use crate::provider::oauth::Grant;

/// How and when merchants are refreshed.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// Latest point of an access token's life to refresh at (0.75).
    pub latest: f64,
    /// Earliest point (0.60): each merchant is due at a random point between the two.
    pub earliest: f64,
    /// Longest time between refreshes whatever the token says (a day: the refresh token is
    /// renewed well inside its 30 days).
    pub max_interval: Duration,
    /// Merchants one sweep takes.
    pub batch: i64,
    /// Refreshes one process runs at once.
    pub concurrency: usize,
    /// Refreshes one process starts per second.
    pub per_second: u32,
    /// First wait after a failed refresh; doubles per failure up to `cooldown_max`.
    pub cooldown_min: Duration,
    /// Longest wait after failures.
    pub cooldown_max: Duration,
    /// Longest wait for another process's refresh of the same merchant (its platform call).
    pub lock_wait: Duration,
    /// Time between sweeps of [`Refresher::run`].
    pub tick: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            latest: 0.75,
            earliest: 0.60,
            max_interval: Duration::from_secs(24 * 3600),
            batch: 200,
            concurrency: 4,
            per_second: 10,
            cooldown_min: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(1800),
            lock_wait: Duration::from_secs(30),
            tick: Duration::from_secs(5),
        }
    }
}

impl RefreshPolicy {
    /// When a grant obtained at `obtained_at` is next due: a random point between `earliest`
    /// and `latest` of the access token's life, never past `max_interval` nor half the
    /// refresh token's life.
    pub fn next_due(&self, obtained_at: SystemTime, grant: &Grant) -> SystemTime {
        let (low, high) = (self.earliest.min(self.latest), self.latest);
        // A range rand cannot draw from (NaN, negative) falls back to the rule's 75 %.
        let point = if low.is_finite() && high.is_finite() && 0.0 <= low && low <= high {
            rand::rng().random_range(low..=high)
        } else {
            0.75
        };
        let after = crate::clock::scaled(grant.expires_in, point)
            .unwrap_or(grant.expires_in)
            .min(self.max_interval)
            .min(grant.refresh_expires_in.checked_div(2).unwrap_or_default())
            .max(Duration::from_secs(1));
        obtained_at.later(after)
    }

    /// The wait after `failures` failed refreshes: doubling from `cooldown_min` up to
    /// `cooldown_max`, jittered by ±20 % so merchants that failed together retry apart.
    pub fn cooldown(&self, failures: i32) -> Duration {
        let doubled = self
            .cooldown_min
            .checked_mul(1u32 << failures.clamp(0, 16))
            .unwrap_or(self.cooldown_max)
            .min(self.cooldown_max);
        crate::clock::scaled(doubled, rand::rng().random_range(0.8..=1.2)).unwrap_or(doubled)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::provider::domain::Uid;

    fn grant(access: u64, refresh: u64) -> Grant {
        Grant {
            access_token: SecretString::from("a"),
            expires_in: Duration::from_secs(access),
            refresh_token: SecretString::from("r"),
            refresh_expires_in: Duration::from_secs(refresh),
            uid: Uid::parse("1").unwrap(),
        }
    }

    #[test]
    fn due_between_60_and_75_percent_at_most_a_day_and_half_the_refresh_life() {
        let policy = RefreshPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for _ in 0..1000 {
            let after = policy
                .next_due(t0, &grant(7200, 2_592_000))
                .duration_since(t0)
                .unwrap();
            assert!((4320..=5400).contains(&after.as_secs()), "{after:?}");
        }
        let year = 365 * 24 * 3600;
        let after = policy
            .next_due(t0, &grant(year, 10 * year))
            .duration_since(t0)
            .unwrap();
        assert_eq!(after, Duration::from_secs(24 * 3600));
        let after = policy
            .next_due(t0, &grant(7200, 600))
            .duration_since(t0)
            .unwrap();
        assert_eq!(after, Duration::from_secs(300));
        let broken = RefreshPolicy {
            earliest: f64::NAN,
            latest: f64::NAN,
            ..RefreshPolicy::default()
        };
        let after = broken
            .next_due(t0, &grant(7200, 2_592_000))
            .duration_since(t0)
            .unwrap();
        assert_eq!(after, Duration::from_secs(5400));
    }

    #[test]
    fn cooldown_doubles_to_its_cap_with_jitter() {
        let policy = RefreshPolicy::default();
        for (failures, base) in [(0, 30), (1, 60), (3, 240), (6, 1800), (40, 1800), (-5, 30)] {
            let wait = policy.cooldown(failures).as_secs_f64();
            let base = base as f64;
            assert!(
                wait >= base * 0.8 - 0.001 && wait <= base * 1.2 + 0.001,
                "{failures}: {wait}"
            );
        }
    }
}
