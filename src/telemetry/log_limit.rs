//! A cap on log lines about bad input: anyone can send bad pushes or put bad commands on the
//! queue, and one line each would let them fill the disk and bury the lines that matter. The
//! metrics still count every one.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Allows a burst of lines, then a steady rate; counts what it holds back.
pub struct LogLimit {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// At most `per_sec` lines a second after a burst of as many.
    pub fn per_second(per_sec: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::direct(Quota::per_second(per_sec)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were held back since the
    /// last one written; `None` when this one must be held back.
    pub fn admit(&self) -> Option<u64> {
        match self.limiter.check() {
            Ok(()) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_the_rest_counted() {
        let limit = LogLimit::per_second(NonZeroU32::new(5).unwrap());
        let admitted: Vec<Option<u64>> = (0..1000).map(|_| limit.admit()).collect();
        let written = admitted.iter().filter(|a| a.is_some()).count();
        // The burst, plus whatever the clock refilled while the loop ran.
        assert!((5..=7).contains(&written), "{written}");
        assert_eq!(admitted[0], Some(0));
        let reported: u64 = admitted.iter().flatten().sum();
        let pending = limit.suppressed.load(Ordering::Relaxed);
        assert_eq!((reported + pending) as usize, 1000 - written);
    }
}
