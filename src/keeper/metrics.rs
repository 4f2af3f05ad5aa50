//! The keeper's Prometheus metrics: refreshes, failures, and the age of each held token.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::SlotState;
use crate::ids::AppId;

/// Counters and gauges of the token keeper, labelled by `appid`.
#[derive(Clone)]
pub struct TokenMetrics {
    refreshes: IntCounterVec,
    failures: IntCounterVec,
    age: TokenAge,
    keeper_active: IntGauge,
    foreign_leader: IntGauge,
    rejected_messages: IntCounter,
}

/// Computes token ages when scraped, so the gauge is never stale.
#[derive(Clone)]
struct TokenAge {
    gauge: GaugeVec,
    slots: Vec<(AppId, watch::Receiver<SlotState>)>,
}

impl TokenMetrics {
    pub(super) fn new(slots: Vec<(AppId, watch::Receiver<SlotState>)>) -> Self {
        let refreshes = IntCounterVec::new(
            Opts::new(
                "weibo_relay_token_refreshes_total",
                "access_tokens obtained, by merchant",
            ),
            &["appid"],
        )
        .expect("static metric definition is valid");
        let failures = IntCounterVec::new(
            Opts::new(
                "weibo_relay_token_refresh_failures_total",
                "Failed access_token requests, by merchant",
            ),
            &["appid"],
        )
        .expect("static metric definition is valid");
        let gauge = GaugeVec::new(
            Opts::new(
                "weibo_relay_token_age_seconds",
                "Age of the access_token held, by merchant",
            ),
            &["appid"],
        )
        .expect("static metric definition is valid");
        for (appid, _) in &slots {
            refreshes.with_label_values(&[appid.as_str()]);
            failures.with_label_values(&[appid.as_str()]);
        }
        let keeper_active = IntGauge::new(
            "weibo_relay_token_keeper_active",
            "1 while this process is the deployment's token keeper, else 0",
        )
        .expect("static metric definition is valid");
        let foreign_leader = IntGauge::new(
            "weibo_relay_token_keeper_foreign_leader",
            "1 while this process stands for keeper, is connected, and has heard no sealed \
             leader heartbeat for 12 s: the keeper queue's active consumer is not a relay",
        )
        .expect("static metric definition is valid");
        let rejected_messages = IntCounter::new(
            "weibo_relay_token_messages_rejected_total",
            "Token keeper messages from the broker (announcements, heartbeats, pings, hellos, \
             refresh requests) that did not decrypt or authenticate, were stale or repeated",
        )
        .expect("static metric definition is valid");
        Self {
            refreshes,
            failures,
            age: TokenAge { gauge, slots },
            keeper_active,
            foreign_leader,
            rejected_messages,
        }
    }

    /// Adds the keeper's metrics to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.refreshes.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.keeper_active.clone()))?;
        registry.register(Box::new(self.foreign_leader.clone()))?;
        registry.register(Box::new(self.rejected_messages.clone()))?;
        registry.register(Box::new(self.age.clone()))
    }

    /// Tokens obtained so far for `appid`.
    pub fn refreshes(&self, appid: &AppId) -> u64 {
        self.refreshes.with_label_values(&[appid.as_str()]).get()
    }

    /// Failed token requests so far for `appid`.
    pub fn refresh_failures(&self, appid: &AppId) -> u64 {
        self.failures.with_label_values(&[appid.as_str()]).get()
    }

    pub(super) fn set_leading(&self, leading: bool) {
        self.keeper_active.set(i64::from(leading));
    }

    pub(super) fn set_foreign_leader(&self, foreign: bool) {
        self.foreign_leader.set(i64::from(foreign));
    }

    /// Counts a broker message that did not decrypt or authenticate.
    pub fn message_rejected(&self) {
        self.rejected_messages.inc();
    }

    pub(super) fn refreshed(&self, appid: &AppId) {
        self.refreshes.with_label_values(&[appid.as_str()]).inc();
    }

    pub(super) fn refresh_failed(&self, appid: &AppId) {
        self.failures.with_label_values(&[appid.as_str()]).inc();
    }
}

impl Collector for TokenAge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        for (appid, rx) in &self.slots {
            let obtained = rx.borrow().token.as_ref().map(|t| t.obtained_at());
            match obtained {
                Some(at) => self
                    .gauge
                    .with_label_values(&[appid.as_str()])
                    .set(now.saturating_duration_since(at).as_secs_f64()),
                None => {
                    // No token yet: no series rather than a misleading 0.
                    let _ = self.gauge.remove_label_values(&[appid.as_str()]);
                }
            }
        }
        self.gauge.collect()
    }
}
