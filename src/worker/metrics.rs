//! The worker's metrics, registered into the process registry.

use super::decide::DeadCause;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// The `outcome` label of `weibo_relay_calls_total`, so every series exists from the start.
pub const CALL_OUTCOMES: [&str; 4] = ["succeeded", "token_rejected", "transient", "permanent"];

/// Calls, their latency, retries and dead letters.
#[derive(Clone)]
pub struct WorkerMetrics {
    calls: IntCounterVec,
    call_seconds: HistogramVec,
    retries: IntCounter,
    dead_letters: IntCounterVec,
}

impl WorkerMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let calls = IntCounterVec::new(
            Opts::new(
                "weibo_relay_calls_total",
                "Platform order calls, by action and outcome",
            ),
            &["action", "outcome"],
        )?;
        let call_seconds = HistogramVec::new(
            HistogramOpts::new("weibo_relay_call_seconds", "Platform order call latency")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["action"],
        )?;
        let retries = IntCounter::new(
            "weibo_relay_retries_total",
            "Commands sent to a delay queue for another attempt",
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "weibo_relay_dead_letters_total",
                "Commands dead-lettered, by cause",
            ),
            &["cause"],
        )?;
        for action in ["finish", "close"] {
            call_seconds.with_label_values(&[action]);
            for outcome in CALL_OUTCOMES {
                calls.with_label_values(&[action, outcome]);
            }
        }
        for cause in DeadCause::ALL {
            dead_letters.with_label_values(&[cause.as_str()]);
        }
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(call_seconds.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        Ok(Self {
            calls,
            call_seconds,
            retries,
            dead_letters,
        })
    }

    pub(super) fn call(&self, action: &str, outcome: &str, seconds: f64) {
        self.calls.with_label_values(&[action, outcome]).inc();
        self.call_seconds
            .with_label_values(&[action])
            .observe(seconds);
    }

    pub(super) fn retry(&self) {
        self.retries.inc();
    }

    pub(super) fn dead_letter(&self, cause: DeadCause) {
        self.dead_letters.with_label_values(&[cause.as_str()]).inc();
    }
}
