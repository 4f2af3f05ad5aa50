//! Reconciliation's metrics.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::event::log::Skipped;
use crate::ids::AppId;
use crate::metrics::Label;

/// How a sweep of one merchant ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SweepOutcome {
    /// The list was read to its end and every missing state published.
    Succeeded,
    /// A call or a publish failed; the next sweep tries again.
    Failed,
}

/// Why a row of the order list was refused (never published): the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RowRefusal {
    /// Larger than a row can be; not parsed.
    Oversized,
    /// Not a JSON object.
    Malformed,
    /// No sub order id a command could name (1 to 64 printable ASCII characters).
    BadSubOrderId,
    /// No state code that is one routing-key word (an integer or a plain token).
    BadStateCode,
    /// Beyond the rows a page was asked for.
    ExcessRows,
}

/// Why a sweep of one merchant stopped before the end of the list: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Truncation {
    /// The platform answered a page with the rows of an earlier page.
    RepeatedPage,
    /// The sweep published as many events as one sweep may; the rest wait for the next.
    EventLimit,
    /// The sweep read as many pages as one sweep may.
    PageLimit,
}

/// Why an entry of the event log was skipped by a sweep: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LogSkip {
    /// Not sealed by this deployment.
    Unsealed,
    /// Larger than an event the relay publishes can be; not read.
    Oversized,
}

/// Sweeps by outcome, events published, the last successful sweep per merchant, and what
/// sweeps refused, cut short or skipped.
#[derive(Clone)]
pub struct ReconcileMetrics {
    sweeps: IntCounterVec,
    reconciled: IntCounter,
    last_success: GaugeVec,
    rows_refused: IntCounterVec,
    truncated: IntCounterVec,
    log_skipped: IntCounterVec,
}

/// A counter family with a series for each of `labels`, registered.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    labels: impl Iterator<Item = &'static str>,
) -> prometheus::Result<IntCounterVec> {
    let family = IntCounterVec::new(Opts::new(name, help), &[label])?;
    for value in labels {
        family.with_label_values(&[value]);
    }
    registry.register(Box::new(family.clone()))?;
    Ok(family)
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
            rows_refused: counter_vec(
                registry,
                "weibo_relay_reconcile_rows_refused_total",
                "Rows of the platform's order list a sweep refused (never published), by reason",
                "reason",
                RowRefusal::all().map(RowRefusal::as_str),
            )?,
            truncated: counter_vec(
                registry,
                "weibo_relay_reconcile_sweeps_truncated_total",
                "Sweeps of one merchant stopped before the end of the list, by reason",
                "reason",
                Truncation::all().map(Truncation::as_str),
            )?,
            log_skipped: counter_vec(
                registry,
                "weibo_relay_reconcile_log_entries_skipped_total",
                "Entries of the event log a sweep skipped: not sealed by this deployment, or oversized",
                "reason",
                LogSkip::all().map(LogSkip::as_str),
            )?,
        })
    }

    pub(super) fn succeeded(&self, appid: &AppId, started: SystemTime) {
        self.sweeps
            .with_label_values(&[SweepOutcome::Succeeded.as_str()])
            .inc();
        let secs = started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success
            .with_label_values(&[appid.as_str()])
            .set(secs);
    }

    pub(super) fn failed(&self) {
        self.sweeps
            .with_label_values(&[SweepOutcome::Failed.as_str()])
            .inc();
    }

    pub(super) fn reconciled(&self) {
        self.reconciled.inc();
    }

    pub(super) fn refused(&self, reason: &str, rows: u64) {
        self.rows_refused.with_label_values(&[reason]).inc_by(rows);
    }

    pub(super) fn truncated(&self, reason: Truncation) {
        self.truncated.with_label_values(&[reason.as_str()]).inc();
    }

    pub(super) fn skipped(&self, skipped: Skipped) {
        for (reason, n) in [
            (LogSkip::Unsealed, skipped.unsealed),
            (LogSkip::Oversized, skipped.oversized),
        ] {
            self.log_skipped
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels dashboards and alerts match on: renaming a variant must not move them.
    #[test]
    fn sweep_outcome_labels_are_the_documented_ones() {
        let labels: Vec<&str> = SweepOutcome::all().map(SweepOutcome::as_str).collect();
        assert_eq!(labels, ["succeeded", "failed"]);
        let labels: Vec<&str> = RowRefusal::all().map(RowRefusal::as_str).collect();
        assert_eq!(
            labels,
            [
                "oversized",
                "malformed",
                "bad_sub_order_id",
                "bad_state_code",
                "excess_rows"
            ]
        );
        let labels: Vec<&str> = Truncation::all().map(Truncation::as_str).collect();
        assert_eq!(labels, ["repeated_page", "event_limit", "page_limit"]);
        let labels: Vec<&str> = LogSkip::all().map(LogSkip::as_str).collect();
        assert_eq!(labels, ["unsealed", "oversized"]);
    }
}
