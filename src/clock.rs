//! Wall-clock time as the platform counts it, and time arithmetic that cannot panic.
//!
//! `SystemTime + Duration`, `Instant + Duration` and `Duration * n` panic on overflow, and a
//! time can come from a stranger (an AMQP `timestamp`, a platform's answer, a command-line
//! duration). The crate's clippy configuration refuses those operators (lint
//! `arithmetic_side_effects` on every type but the primitive numbers) and humantime's
//! formatters (they panic past the year 9999): time arithmetic goes through here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A hundred years: where a deadline that would overflow is put instead.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The first second humantime cannot write (year 10000).
const YEAR_10000: u64 = 253_402_300_800;

/// Seconds since the unix epoch (0 if the clock is before it).
pub fn unix_secs() -> u64 {
    secs_of(SystemTime::now())
}

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `at` in seconds since the unix epoch (0 if before it).
pub fn secs_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` seconds after the unix epoch; `None` when the system cannot represent it
/// (an AMQP `timestamp` of 2^64-1, say).
pub fn from_unix_secs(secs: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `at` as RFC 3339 in whole seconds (UTC); `None` before 1970 or after 9999, which
/// humantime cannot write (its `Display` fails, and `to_string` panics on that).
#[allow(clippy::disallowed_methods)] // the one use: the range is checked first
pub fn rfc3339(at: SystemTime) -> Option<String> {
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (secs < YEAR_10000).then(|| humantime::format_rfc3339_seconds(at).to_string())
}

/// Times that can be moved forward without panicking.
pub trait Later: Copy {
    /// `self + by`, `None` on overflow (the type's own `checked_add`).
    fn checked_later(self, by: Duration) -> Option<Self>;

    /// `self + by`, or a century from `self` when that overflows: a deadline that is never
    /// reached rather than a panic. (`self` itself only if even that overflows.)
    fn later(self, by: Duration) -> Self {
        self.checked_later(by)
            .or_else(|| self.checked_later(by.min(CENTURY)))
            .unwrap_or(self)
    }
}

impl Later for SystemTime {
    fn checked_later(self, by: Duration) -> Option<Self> {
        self.checked_add(by)
    }
}

impl Later for Instant {
    fn checked_later(self, by: Duration) -> Option<Self> {
        self.checked_add(by)
    }
}

impl Later for tokio::time::Instant {
    fn checked_later(self, by: Duration) -> Option<Self> {
        self.checked_add(by)
    }
}

/// `at - by`, or the unix epoch when that is before it (or not representable).
pub fn earlier(at: SystemTime, by: Duration) -> SystemTime {
    at.checked_sub(by)
        .filter(|t| *t >= UNIX_EPOCH)
        .unwrap_or(UNIX_EPOCH)
}

/// `d * factor`, `None` when the factor is negative, not a number, or the product does not
/// fit a `Duration` (where `Duration::mul_f64` panics).
pub fn scaled(d: Duration, factor: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_times_give_none_or_a_bound_never_a_panic() {
        assert_eq!(from_unix_secs(u64::MAX), None);
        assert_eq!(
            from_unix_secs(1_700_000_000).map(secs_of),
            Some(1_700_000_000)
        );
        // Representable, but past what humantime writes.
        let at = |secs| from_unix_secs(secs).expect("representable");
        assert_eq!(rfc3339(at(1 << 40)), None);
        assert_eq!(
            rfc3339(earlier(UNIX_EPOCH, Duration::from_secs(1))).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        let before_1970 = UNIX_EPOCH
            .checked_sub(Duration::from_secs(1))
            .expect("representable");
        assert_eq!(rfc3339(before_1970), None);
        assert_eq!(
            rfc3339(at(1_700_000_000)).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        let now = SystemTime::now();
        assert!(now.later(Duration::MAX) > now);
        assert!(Instant::now().later(Duration::MAX) > Instant::now());
        assert_eq!(earlier(now, Duration::MAX), UNIX_EPOCH);
        assert_eq!(earlier(at(10), Duration::from_secs(4)), at(6));
        assert_eq!(scaled(Duration::from_secs(60), 1e300), None);
        assert_eq!(scaled(Duration::from_secs(60), f64::NAN), None);
        assert_eq!(scaled(Duration::from_secs(60), -1.0), None);
        assert_eq!(
            scaled(Duration::from_secs(60), 0.5),
            Some(Duration::from_secs(30))
        );
    }
}
