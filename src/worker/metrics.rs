//! The worker's metrics, registered into the process registry.

use super::decide::DeadCause;
use crate::metrics::Label;
use crate::weibo::{Action, CallOutcome};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// How a platform call ended: the `outcome` label of `weibo_relay_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum CallResult {
    /// Done (or already done).
    Succeeded,
    /// The token was refused.
    TokenRejected,
    /// Worth another try later.
    Transient,
    /// Refused for good.
    Permanent,
}

impl From<&CallOutcome> for CallResult {
    fn from(outcome: &CallOutcome) -> Self {
        match outcome {
            CallOutcome::Succeeded { .. } => Self::Succeeded,
            CallOutcome::TokenRejected { .. } => Self::TokenRejected,
            CallOutcome::Transient { .. } => Self::Transient,
            CallOutcome::Permanent { .. } => Self::Permanent,
        }
    }
}

/// The actions the worker calls: the `action` label.
const ACTIONS: [Action; 2] = [Action::Finish, Action::Close];

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
        for action in ACTIONS {
            call_seconds.with_label_values(&[action.label()]);
            for result in CallResult::all() {
                calls.with_label_values(&[action.label(), result.as_str()]);
            }
        }
        for cause in DeadCause::all() {
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

    pub(super) fn call(&self, action: Action, result: CallResult, seconds: f64) {
        self.calls
            .with_label_values(&[action.label(), result.as_str()])
            .inc();
        self.call_seconds
            .with_label_values(&[action.label()])
            .observe(seconds);
    }

    pub(super) fn retry(&self) {
        self.retries.inc();
    }

    pub(super) fn dead_letter(&self, cause: DeadCause) {
        self.dead_letters.with_label_values(&[cause.as_str()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::{CallResult, DeadCause};
    use crate::metrics::Label;

    /// The labels dashboards and alerts match on: renaming a variant must not move them.
    #[test]
    fn call_and_dead_letter_labels_are_the_documented_ones() {
        let calls: Vec<&str> = CallResult::all().map(CallResult::as_str).collect();
        assert_eq!(
            calls,
            ["succeeded", "token_rejected", "transient", "permanent"]
        );
        let causes: Vec<&str> = DeadCause::all().map(DeadCause::as_str).collect();
        assert_eq!(
            causes,
            [
                "malformed",
                "unknown_merchant",
                "permanent",
                "exhausted",
                "refused",
                "unknown"
            ]
        );
    }
}
