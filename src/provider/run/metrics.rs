//! Provider mode's metrics. Registered in every process, so dashboards and alerts find the
//! series whatever the mode (zero outside provider mode).

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::metrics::Label;
use crate::provider::domain::MerchantStatus;
use crate::provider::refresh::SweepReport;

/// How a refresh the sweeper started ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RefreshResult {
    /// New tokens stored.
    Refreshed,
    /// The platform did not answer or refused for a reason that is not the merchant's; the
    /// merchant waits, backing off.
    Failed,
    /// The refresh token was refused: the merchant must consent again.
    NeedsReauthorization,
    /// The store could not be read or written.
    StoreError,
}

/// Merchants by status, refreshes by outcome, merchant events published.
#[derive(Clone)]
pub struct ProviderMetrics {
    merchants: IntGaugeVec,
    refreshes: IntCounterVec,
    events: IntCounter,
}

impl ProviderMetrics {
    /// Creates and registers the metrics, with a series for each status and outcome.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let merchants = IntGaugeVec::new(
            Opts::new(
                "weibo_relay_provider_merchants",
                "Merchants of the provider's store by status, as this process last read it",
            ),
            &["status"],
        )?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "weibo_relay_provider_refreshes_total",
                "Merchant token refreshes this process ran, by outcome",
            ),
            &["outcome"],
        )?;
        let events = IntCounter::new(
            "weibo_relay_provider_events_published_total",
            "Merchant events published from the store's outbox and confirmed by the broker",
        )?;
        for status in MerchantStatus::all() {
            merchants.with_label_values(&[status.as_str()]);
        }
        for outcome in RefreshResult::all() {
            refreshes.with_label_values(&[outcome.as_str()]);
        }
        registry.register(Box::new(merchants.clone()))?;
        registry.register(Box::new(refreshes.clone()))?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self {
            merchants,
            refreshes,
            events,
        })
    }

    /// Records a count read from the store; statuses it did not name have none.
    pub fn set_merchants(&self, counts: &[(MerchantStatus, i64)]) {
        for status in MerchantStatus::all() {
            let count = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.merchants
                .with_label_values(&[status.as_str()])
                .set(count);
        }
    }

    /// Counts a sweep's refreshes.
    pub fn count_sweep(&self, report: &SweepReport) {
        for (outcome, n) in [
            (RefreshResult::Refreshed, report.refreshed),
            (RefreshResult::Failed, report.failed),
            (
                RefreshResult::NeedsReauthorization,
                report.needs_reauthorization,
            ),
            (RefreshResult::StoreError, report.errors),
        ] {
            self.refreshes
                .with_label_values(&[outcome.as_str()])
                .inc_by(n);
        }
    }

    /// Counts published events.
    pub fn published(&self, n: usize) {
        self.events.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}
