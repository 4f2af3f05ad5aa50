//! A candidate's view of who leads. The broker gives the keeper queue to whichever consumer it
//! likes best, relay or not; a relay that leads says so each second with a sealed heartbeat on
//! the tokens exchange. A connected candidate that hears none for [`FOREIGN_AFTER`] concludes
//! that the queue's active consumer is not one of ours.

use std::time::{Duration, Instant};

use super::TokenKeeper;

/// Silence after which a connected candidate reports a foreign leader. Longer than a failover
/// behind a silent network cut (the broker's heartbeat timeout, about 10 s, then the next
/// ping), so that an ordinary failover is not reported; short enough that a stranger is
/// reported within 15 s.
pub const FOREIGN_AFTER: Duration = Duration::from_secs(12);

/// What changed at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// No relay has been heard leading for this long.
    Foreign(Duration),
    /// A relay leads again (or this process stopped standing: no longer its business).
    Cleared,
}

/// Whether a relay was heard leading lately, as one candidate sees it.
#[derive(Debug)]
pub struct LeaderWatch {
    since: Instant,
    heard: Option<Instant>,
    foreign: bool,
}

impl LeaderWatch {
    /// A candidate that started standing at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            heard: None,
            foreign: false,
        }
    }

    /// A sealed leader heartbeat arrived at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// The state at `now`, when this process `leading` or not; `Some` when it changed.
    pub fn check(&mut self, leading: bool, now: Instant) -> Option<Change> {
        let silent =
            now.saturating_duration_since(self.heard.unwrap_or(self.since).max(self.since));
        let foreign = !leading && silent >= FOREIGN_AFTER;
        match (self.foreign, foreign) {
            (false, true) => {
                self.foreign = true;
                Some(Change::Foreign(silent))
            }
            (true, false) => {
                self.foreign = false;
                Some(Change::Cleared)
            }
            _ => None,
        }
    }

    /// True while a foreign leader is reported.
    pub fn is_foreign(&self) -> bool {
        self.foreign
    }
}

impl TokenKeeper {
    /// Records that `queue`'s active consumer is not a relay (`None`: a relay leads, or this
    /// process no longer stands).
    pub fn set_foreign_leader(&self, queue: Option<&str>) {
        let mut held = self
            .inner
            .foreign_leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = queue.map(str::to_owned);
        self.inner.metrics.set_foreign_leader(queue.is_some());
    }

    /// The keeper queue, while its active consumer is not a relay of this deployment.
    pub fn foreign_leader(&self) -> Option<String> {
        self.inner
            .foreign_leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_limit_is_reported_once_and_cleared_by_a_heartbeat_or_by_leading() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut watch = LeaderWatch::new(t0);
        // A candidate that just started hears nobody yet: not a report.
        assert_eq!(watch.check(false, at(11)), None);
        assert_eq!(
            watch.check(false, at(12)),
            Some(Change::Foreign(Duration::from_secs(12)))
        );
        assert!(watch.is_foreign());
        assert_eq!(watch.check(false, at(20)), None, "reported once");
        watch.heard(at(21));
        assert_eq!(watch.check(false, at(21)), Some(Change::Cleared));
        assert!(!watch.is_foreign());
        // Heartbeats every second keep it quiet; a failover of 11 s is not reported.
        assert_eq!(watch.check(false, at(32)), None);
        watch.heard(at(32));
        assert_eq!(watch.check(false, at(40)), None);
        // The leader itself never reports one.
        assert_eq!(watch.check(true, at(100)), None);
        assert_eq!(
            watch.check(false, at(100)),
            Some(Change::Foreign(Duration::from_secs(68)))
        );
        assert_eq!(watch.check(true, at(101)), Some(Change::Cleared));
    }
}
