//! `weibo_relay_gateway_calls_total{client,interface,outcome}`: every label from the
//! configuration or a fixed list, so no caller can grow the series.

use prometheus::{IntCounterVec, Opts, Registry};

/// The gateway's counters; cheap to clone.
#[derive(Clone)]
pub struct GatewayMetrics {
    calls: IntCounterVec,
}

impl GatewayMetrics {
    /// The counters, registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let calls = IntCounterVec::new(
            Opts::new(
                "weibo_relay_gateway_calls_total",
                "Gateway requests by client, interface and outcome (success, permanent, \
                 transient, unknown, refused); names outside the configuration count as other",
            ),
            &["client", "interface", "outcome"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        Ok(Self { calls })
    }

    /// Counts one request; `client` and `interface` are configured names or `other`.
    pub fn call(&self, client: &str, interface: &str, outcome: &str) {
        self.calls
            .with_label_values(&[client, interface, outcome])
            .inc();
    }
}
