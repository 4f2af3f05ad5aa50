//! Prometheus metrics, owned by the application (no process-wide registry).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// A metric label enum: its variants' names in snake_case are the label values (strum), so a
/// new variant brings its label along, and [`all`](Label::all) gives every series from the
/// start. Derive `strum::EnumIter` and `strum::IntoStaticStr` with
/// `#[strum(serialize_all = "snake_case")]` and it is one.
pub trait Label: strum::IntoEnumIterator + Into<&'static str> + Copy {
    /// Every variant, in declaration order.
    fn all() -> impl Iterator<Item = Self> {
        Self::iter()
    }

    /// The label value: the variant's name in snake_case.
    fn as_str(self) -> &'static str {
        self.into()
    }
}

impl<T: strum::IntoEnumIterator + Into<&'static str> + Copy> Label for T {}

/// What became of a push: the `outcome` label of `weibo_relay_pushes_total`. Adding a
/// refusal is adding a variant here; the compiler then asks for its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PushOutcome {
    /// Stored: published and confirmed.
    Accepted,
    /// Already stored by this process; answered without a publish.
    Duplicate,
    /// The signature does not verify.
    BadSignature,
    /// The timestamp is outside the window.
    Stale,
    /// No merchant for the appid.
    UnknownMerchant,
    /// Provider mode: the push names a uid that is no authorized merchant.
    UnknownUid,
    /// Not a push.
    Malformed,
    /// Over `http.max_body_bytes`.
    TooLarge,
    /// Neither form nor JSON.
    UnsupportedMediaType,
    /// The body did not arrive in time.
    BodyTimeout,
    /// Not confirmed by the broker (503).
    BrokerUnavailable,
}

/// Every metric the process exports.
pub struct Metrics {
    registry: Registry,
    pushes: IntCounterVec,
    publish_confirm: Histogram,
    pushes_in_flight: IntGauge,
    ready: IntGauge,
    broker_connected: IntGauge,
}

/// Counts a push as in flight until dropped.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Registers the receiver's metrics in a fresh registry; `role` (`serve`, `receiver`,
    /// `worker`) labels `weibo_relay_build_info`, so dashboards and alerts tell them apart.
    pub fn new(role: &str) -> Self {
        let registry = Registry::new();
        let pushes = IntCounterVec::new(
            Opts::new("weibo_relay_pushes_total", "Pushes received, by outcome"),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let publish_confirm = Histogram::with_opts(
            HistogramOpts::new(
                "weibo_relay_publish_confirm_seconds",
                "Time from publish to the broker's confirm",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static metric definition is valid");
        let pushes_in_flight = IntGauge::new(
            "weibo_relay_pushes_in_flight",
            "Pushes being received, verified or published right now",
        )
        .expect("static metric definition is valid");
        let ready = IntGauge::new(
            "weibo_relay_ready",
            "1 while /readyz answers 200 (broker connected, tokens held), as of the last scrape",
        )
        .expect("static metric definition is valid");
        let broker_connected = IntGauge::new(
            "weibo_relay_broker_connected",
            "1 while the broker connection is up, as of the last scrape",
        )
        .expect("static metric definition is valid");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "weibo_relay_build_info",
                "Always 1; the version and the process's role as labels",
            ),
            &["version", "role"],
        )
        .expect("static metric definition is valid");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), role])
            .set(1);
        for outcome in PushOutcome::all() {
            pushes.with_label_values(&[outcome.as_str()]);
        }
        for gauge in [&ready, &broker_connected] {
            registry
                .register(Box::new(gauge.clone()))
                .expect("first registration");
        }
        registry
            .register(Box::new(build_info))
            .expect("first registration");
        registry
            .register(Box::new(pushes.clone()))
            .expect("first registration");
        registry
            .register(Box::new(publish_confirm.clone()))
            .expect("first registration");
        registry
            .register(Box::new(pushes_in_flight.clone()))
            .expect("first registration");
        Self {
            registry,
            pushes,
            publish_confirm,
            pushes_in_flight,
            ready,
            broker_connected,
        }
    }

    /// The registry, for roles that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Marks a push in flight for as long as the returned guard lives.
    pub fn push_started(&self) -> InFlight {
        self.pushes_in_flight.inc();
        InFlight(self.pushes_in_flight.clone())
    }

    /// Counts one push with its outcome.
    pub fn push(&self, outcome: PushOutcome) {
        self.pushes.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Records one publish-to-confirm time.
    pub fn publish_confirmed(&self, elapsed: std::time::Duration) {
        self.publish_confirm.observe(elapsed.as_secs_f64());
    }

    /// Records what readiness is at this scrape.
    pub fn set_readiness(&self, broker_connected: bool, ready: bool) {
        self.broker_connected.set(i64::from(broker_connected));
        self.ready.set(i64::from(ready));
    }

    /// Everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for text; an error would only drop this scrape.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Label, PushOutcome};

    /// The labels dashboards and alerts match on: renaming a variant must not move them.
    #[test]
    fn push_outcome_labels_are_the_documented_ones() {
        let labels: Vec<&str> = PushOutcome::all().map(PushOutcome::as_str).collect();
        assert_eq!(
            labels,
            [
                "accepted",
                "duplicate",
                "bad_signature",
                "stale",
                "unknown_merchant",
                "unknown_uid",
                "malformed",
                "too_large",
                "unsupported_media_type",
                "body_timeout",
                "broker_unavailable",
            ]
        );
    }
}
