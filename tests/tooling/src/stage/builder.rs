//! The one way to start a stage: what it runs, its settings' last changes, and how far the
//! relay in this process must have come, set step by step and started once.

use std::sync::Arc;
use std::time::Duration;

use super::{declare_tap, settings, InProcess, PlatformOptions, Ready, Stage, Teardown};
use crate::sandbox::{Faults, Sandbox, SandboxConfig};
use weibo_relay::settings::{AmqpSettings, Settings};
use weibo_relay::startup::{Application, Roles};

/// A last change to a stage's settings.
type Adjust = Box<dyn FnOnce(&mut Settings) + Send>;

/// A stage to be started: [`Stage::builder`] for the tests, [`Stage::tool`] for the demo and
/// the benches.
#[must_use = "a stage starts only with `start`"]
pub struct StageBuilder {
    settings: Settings,
    roles: Option<Roles>,
    platform: Option<PlatformOptions>,
    adjust: Vec<Adjust>,
    ready: Ready,
    teardown_through: Option<AmqpSettings>,
    tap: bool,
    probe: bool,
}

impl Stage {
    /// A stage on `settings` as they are (names from [`super::isolated`] already): no relay in
    /// this process, no platform, and the tests' tap (a queue, [`super::tap_queue`], bound to
    /// every order event before any relay runs, for a test to read what was published).
    pub fn builder(settings: Settings) -> StageBuilder {
        StageBuilder {
            settings,
            roles: None,
            platform: None,
            adjust: Vec::new(),
            ready: Ready::No,
            teardown_through: None,
            tap: true,
            probe: false,
        }
    }

    /// The demo's and the benches' stage: names `<prefix>.<run>.*` on `base`, one merchant with
    /// fresh credentials, the sandbox platform, and no tap (they read no event back: a tap
    /// would only fill); it fails at once when no broker answers, and returns once the relay
    /// is ready (broker connected, token held).
    pub fn tool(base: Settings, prefix: &str) -> StageBuilder {
        StageBuilder {
            tap: false,
            probe: true,
            platform: Some(PlatformOptions::default()),
            ready: Ready::Full,
            ..Self::builder(settings::staged(base, prefix))
        }
    }
}

impl StageBuilder {
    /// A relay with `roles` in this process (else relays run as processes only, see
    /// [`Stage::spawn`]).
    pub fn roles(mut self, roles: Roles) -> Self {
        self.roles = Some(roles);
        self
    }

    /// The sandbox platform, with the relay's settings pointed at it.
    pub fn platform(mut self, platform: PlatformOptions) -> Self {
        self.platform = Some(platform);
        self
    }

    /// The sandbox platform injecting `faults` from the start.
    pub fn faults(self, faults: Faults) -> Self {
        let platform = PlatformOptions {
            faults,
            ..self.platform.clone().unwrap_or_default()
        };
        self.platform(platform)
    }

    /// The sandbox platform issuing tokens that live `ttl`.
    pub fn token_ttl(self, ttl: Duration) -> Self {
        let platform = PlatformOptions {
            token_ttl: ttl,
            ..self.platform.clone().unwrap_or_default()
        };
        self.platform(platform)
    }

    /// Provider mode: `provider` instead of the stage's merchant, the relay listening on `bind`
    /// (its connect pages' address is in `provider` and `oauth2` before it starts), and the
    /// platform knowing the provider's app `oauth2`.
    pub fn provider(
        mut self,
        provider: weibo_relay::provider::settings::Provider,
        bind: std::net::SocketAddr,
        oauth2: crate::sandbox::OAuth2App,
    ) -> Self {
        self.settings.merchants = weibo_relay::settings::Merchants::default();
        self.settings.provider = Some(provider);
        self.settings.http.bind = bind;
        let platform = PlatformOptions {
            oauth2: Some(oauth2),
            ..self.platform.clone().unwrap_or_default()
        };
        self.platform(platform)
    }

    /// Changes the settings after the platform's URLs are in and before anything declares a
    /// queue; several apply in the order given.
    pub fn settings(mut self, adjust: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// How far the relay in this process must have come before [`start`](Self::start) returns.
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// The broker to delete the stage's queues through, when not the relay's own (a relay
    /// behind a proxy that a test cuts).
    pub fn teardown_through(mut self, amqp: AmqpSettings) -> Self {
        self.teardown_through = Some(amqp);
        self
    }

    /// Starts the platform, declares the tap, starts the relay and waits for it as asked; a
    /// stage that fails half-way deletes what it declared.
    pub async fn start(self) -> anyhow::Result<Stage> {
        let mut settings = self.settings;
        if self.probe {
            probe(&settings.amqp).await?;
        }
        let sandbox = match self.platform {
            Some(platform) => {
                // Provider mode: the platform knows the provider's key, which signs its calls.
                let mut config = SandboxConfig::new(settings.signers());
                config.faults = platform.faults;
                config.token_ttl = platform.token_ttl;
                config.oauth2 = platform.oauth2;
                let sandbox = Sandbox::start(config)?;
                settings.weibo.api_base = url::Url::parse(&sandbox.api_base())?;
                settings.weibo.oauth_base = url::Url::parse(&sandbox.base_url())?;
                Some(Arc::new(sandbox))
            }
            None => None,
        };
        for adjust in self.adjust {
            adjust(&mut settings);
        }
        // Before anything is declared: whatever fails from here, nothing is left behind.
        let through = self
            .teardown_through
            .unwrap_or_else(|| settings.amqp.clone());
        let teardown = Teardown::through(&settings, through.clone());
        let mut stage = Stage {
            teardown: Some(teardown),
            settings,
            sandbox,
            relay: None,
        };
        if self.tap {
            declare_tap(&through, &stage.settings).await?;
        }
        if let Some(roles) = self.roles {
            let app = Application::build(stage.settings.clone(), roles).await?;
            let (url, admin_url) = (
                format!("http://{}", app.address()),
                app.admin_address().map(|a| format!("http://{a}")),
            );
            let (broker, shutdown) = (app.broker().clone(), app.shutdown_token());
            let gateway_url = app.gateway_address().map(|a| format!("http://{a}"));
            stage.relay = Some(InProcess {
                url,
                admin_url,
                gateway_url,
                broker,
                shutdown,
                task: Some(tokio::spawn(app.run_until_stopped())),
            });
            if let Err(error) = stage.wait(self.ready).await {
                stage.stop().await;
                return Err(error);
            }
        }
        Ok(stage)
    }
}

/// One attempt before anything starts: without a broker the run stops at once with one line
/// saying so, instead of a relay retrying for its whole start-up time.
async fn probe(amqp: &AmqpSettings) -> anyhow::Result<()> {
    match weibo_relay::amqp::connect_once(amqp, "weibo-relay stage probe").await {
        Ok(connection) => {
            let _ = connection.close(200, "probed".into()).await;
            Ok(())
        }
        Err(error) => anyhow::bail!(
            "the broker is unreachable: {}. {}",
            error.nodes(),
            super::NO_BROKER_HINT
        ),
    }
}
