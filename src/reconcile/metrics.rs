//! Reconciliation's metrics.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

/// How a sweep of one merchant ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SweepOutcome {
    /// The list was read to its end and every missing state published.
    Succeeded,
    /// A call or a publish failed; the next sweep tries again.
    Failed,
}

impl SweepOutcome {
    /// Every variant, in declaration order; a new variant is in it without a word (strum),
    /// so every series exists from the start.
    pub fn all() -> impl Iterator<Item = Self> {
        <Self as strum::IntoEnumIterator>::iter()
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        // The variant's name in snake_case (strum): a new variant brings its label along.
        self.into()
    }
}

/// Sweeps by outcome, events published, and the last successful sweep per merchant.
#[derive(Clone)]
pub struct ReconcileMetrics {
    sweeps: IntCounterVec,
    reconciled: IntCounter,
    last_success: GaugeVec,
}

impl ReconcileMetrics {
    /// Creates and registers the metrics, with a series for each outcome.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let sweeps = IntCounterVec::new(
            Opts::new(
                "weibo_relay_reconcile_sweeps_total",
                "Reconciliation sweeps of one merchant's order list, by outcome",
            ),
            &["outcome"],
        )?;
        for outcome in SweepOutcome::all() {
            sweeps.with_label_values(&[outcome.as_str()]);
        }
        let reconciled = IntCounter::new(
            "weibo_relay_reconciled_events_total",
            "Order events published because the event log lacked them",
        )?;
        let last_success = GaugeVec::new(
            Opts::new(
                "weibo_relay_reconcile_last_success_timestamp_seconds",
                "When the last successful sweep of a merchant started (unix seconds)",
            ),
            &["appid"],
        )?;
        registry.register(Box::new(sweeps.clone()))?;
        registry.register(Box::new(reconciled.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(Self {
            sweeps,
            reconciled,
            last_success,
        })
    }

    pub(super) fn succeeded(&self, appid: &str, started: SystemTime) {
        self.sweeps
            .with_label_values(&[SweepOutcome::Succeeded.as_str()])
            .inc();
        let secs = started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.with_label_values(&[appid]).set(secs);
    }

    pub(super) fn failed(&self) {
        self.sweeps
            .with_label_values(&[SweepOutcome::Failed.as_str()])
            .inc();
    }

    pub(super) fn reconciled(&self) {
        self.reconciled.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::SweepOutcome;

    /// The labels dashboards and alerts match on: renaming a variant must not move them.
    #[test]
    fn sweep_outcome_labels_are_the_documented_ones() {
        let labels: Vec<&str> = SweepOutcome::all().map(SweepOutcome::as_str).collect();
        assert_eq!(labels, ["succeeded", "failed"]);
    }
}
