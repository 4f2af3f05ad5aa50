//! The one way a test starts what it tests: `Harness::builder()`, the changes it needs, then
//! a relay in this process ([`Harness::start`]), a relay with the sandbox platform and a
//! queue catching its outcomes ([`Harness::rig`]), or a stage whose relays run as processes
//! ([`Harness::stage`]). Each runs on names of its own, deleted afterwards even after a panic.

use std::time::Duration;

use weibo_relay::settings::{AmqpUrl, Settings};
use weibo_relay::startup::Roles;
use weibo_relay_tooling::sandbox::Faults;
use weibo_relay_tooling::stage::{PlatformOptions, Ready, Stage, StageBuilder};

use super::rig::WorkerRig;
use super::{test_settings, TestApp, AMQP_URL};

/// A last change to a test's settings.
type Adjust = Box<dyn FnOnce(&mut Settings) + Send>;

/// What a test runs, set step by step; started by [`start`](Self::start),
/// [`rig`](Self::rig) or [`stage`](Self::stage).
#[must_use = "nothing runs until `start`, `rig` or `stage`"]
pub struct Harness {
    settings: Settings,
    roles: Option<Roles>,
    platform: Option<PlatformOptions>,
    adjust: Vec<Adjust>,
    wait: bool,
}

impl Harness {
    /// [`test_settings`] on the machine's broker, the roles each way of starting defaults to,
    /// no platform unless asked or a rig, and waiting for the relay.
    pub fn builder() -> Self {
        Self {
            settings: test_settings(AMQP_URL),
            roles: None,
            platform: None,
            adjust: Vec::new(),
            wait: true,
        }
    }

    /// Starts from `settings` (built from [`test_settings`]) instead.
    pub fn base(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The relay reaches its broker at `url` (a proxy the test cuts, say); clean-up still goes
    /// straight to the machine's broker.
    pub fn amqp_url(mut self, url: &str) -> Self {
        self.settings.amqp.url = AmqpUrl::parse(url).expect("a test's broker URL parses");
        self
    }

    /// The roles of the relay in this process (a receiver for [`start`](Self::start), a worker
    /// for [`rig`](Self::rig) unless told).
    pub fn roles(mut self, roles: Roles) -> Self {
        self.roles = Some(roles);
        self
    }

    /// The sandbox platform, the relay pointed at it.
    pub fn platform(mut self) -> Self {
        self.platform.get_or_insert_with(PlatformOptions::default);
        self
    }

    /// The sandbox platform injecting `faults` from the start.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.platform
            .get_or_insert_with(PlatformOptions::default)
            .faults = faults;
        self
    }

    /// The sandbox platform issuing tokens that live `ttl`.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.platform
            .get_or_insert_with(PlatformOptions::default)
            .token_ttl = ttl;
        self
    }

    /// Changes the settings last (after the platform's URLs and a rig's own limits); several
    /// apply in the order given.
    pub fn settings(mut self, adjust: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// Returns without waiting: for [`start`](Self::start), not even for the broker (a relay
    /// that cannot reach one); for [`rig`](Self::rig), not for `/readyz` (a worker that has
    /// no token yet).
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// A relay in this process (a receiver unless told), ready as far as its broker link.
    pub async fn start(self) -> TestApp {
        let roles = self.roles.unwrap_or(Roles::Receiver);
        let ready = if self.wait { Ready::Broker } else { Ready::No };
        let builder = self.into_stage().roles(roles).ready(ready);
        TestApp::on(start(builder).await).await
    }

    /// A relay in this process (a worker unless told) on the sandbox platform, with small
    /// limits and quick retries, and a queue catching its outcomes; ready (a token held)
    /// unless [`no_wait`](Self::no_wait).
    pub async fn rig(mut self) -> WorkerRig {
        let roles = self.roles.unwrap_or(Roles::Worker);
        let wait = self.wait;
        self.platform.get_or_insert_with(PlatformOptions::default);
        self.adjust.insert(0, Box::new(rig_limits));
        let builder = self.into_stage().roles(roles).ready(Ready::Broker);
        WorkerRig::on(start(builder).await, wait).await
    }

    /// A stage with no relay in this process: relays run as processes,
    /// `stage.spawn(BIN, role, rust_log)`.
    pub async fn stage(self) -> Stage {
        start(self.into_stage()).await
    }

    fn into_stage(self) -> StageBuilder {
        if std::env::var_os("TEST_LOG").is_some() {
            // Tests run no exporter: nothing to keep.
            let _ = weibo_relay::telemetry::init(false);
        }
        // Through the machine's broker as guest, whatever the relay goes through (a proxy the
        // test cuts, a user the test deletes): clean-up must not depend on what the test broke.
        let mut direct = self.settings.amqp.clone();
        direct.url = AmqpUrl::parse(AMQP_URL).unwrap();
        direct.urls.clear();
        (
            direct.tls_ca_file,
            direct.tls_cert_file,
            direct.tls_key_file,
        ) = (None, None, None);
        let mut builder = Stage::builder(self.settings).teardown_through(direct);
        if let Some(platform) = self.platform {
            builder = builder.platform(platform);
        }
        self.adjust
            .into_iter()
            .fold(builder, |builder, adjust| builder.settings(adjust))
    }
}

/// A stage for a test; a stage that cannot start fails the test with the reason.
async fn start(builder: StageBuilder) -> Stage {
    builder
        .start()
        .await
        .unwrap_or_else(|e| panic!("the stage did not start: {e:#}"))
}

/// A rig's worker: calls time out in 2 s, four attempts 100-400 ms apart, no rate limit worth
/// the name, and 2 s to wait for a token, so a test of retries takes seconds.
fn rig_limits(settings: &mut Settings) {
    settings.weibo.timeout_ms = 2000.try_into().unwrap();
    settings.weibo.max_attempts = 4.try_into().unwrap();
    settings.weibo.retry_base_ms = 100.try_into().unwrap();
    settings.weibo.retry_max_ms = 400.try_into().unwrap();
    settings.weibo.rate_limit_per_sec = 1000.try_into().unwrap();
    settings.worker.token_wait_ms = 2000.try_into().unwrap();
}
