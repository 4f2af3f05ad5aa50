//! A stage on the local broker: a sandbox platform and a relay process with queue names of
//! their own, torn down afterwards. The demo and `bench worker` both run on one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::amqp::Topology;
use crate::config::{Merchant, Merchants, Settings};
use crate::sandbox::{Faults, Sandbox, SandboxConfig, SandboxHandle};
use crate::startup::{Application, Roles};
use crate::worker::{worker_topology, RetryPolicy};

/// The appid of the one merchant on a stage.
pub const STAGE_APPID: &str = "100023";
/// Broker link and first token: beyond this the set-up, not the relay, is what failed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running sandbox and relay; [`Stage::stop`] removes everything they declared.
pub struct Stage {
    settings: Settings,
    sandbox: Arc<SandboxHandle>,
    topology: Topology,
    relay_url: String,
    shutdown: CancellationToken,
    relay: JoinHandle<anyhow::Result<()>>,
}

impl Stage {
    /// Starts a sandbox with `faults` and the relay `roles` on `base` settings, with names
    /// `<prefix>.<run>.*`, one merchant with fresh credentials, and `adjust` applied last;
    /// returns once the relay is ready (broker connected, token held).
    pub async fn start(
        base: Settings,
        prefix: &str,
        roles: Roles,
        faults: Faults,
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        let mut settings = staged(base, prefix);
        adjust(&mut settings);
        let mut sandbox_config = SandboxConfig::new(settings.merchants.clone());
        sandbox_config.faults = faults;
        let sandbox = Arc::new(Sandbox::start(sandbox_config)?);
        settings.weibo.api_base = sandbox.api_base();
        settings.weibo.oauth_base = sandbox.base_url();
        let topology = Topology::events(&settings.amqp, &settings.event_log.max_age).merge(
            worker_topology(&settings.amqp, &RetryPolicy::from_settings(&settings.weibo)),
        );
        let app = Application::build(settings.clone(), roles).await?;
        let relay_url = format!("http://{}", app.address());
        let shutdown = app.shutdown_token();
        let relay = tokio::spawn(app.run_until_stopped());
        let stage = Self {
            settings,
            sandbox,
            topology,
            relay_url,
            shutdown,
            relay,
        };
        match stage.wait_ready().await {
            Ok(()) => Ok(stage),
            Err(error) => {
                stage.stop().await;
                Err(error)
            }
        }
    }

    /// The relay's settings (names, URLs of the sandbox).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The sandbox platform.
    pub fn sandbox(&self) -> &Arc<SandboxHandle> {
        &self.sandbox
    }

    /// `http://addr` of the relay.
    pub fn relay_url(&self) -> &str {
        &self.relay_url
    }

    /// Stops the relay gracefully, then the sandbox, then deletes the stage's queues.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.relay.await;
        if let Ok(sandbox) = Arc::try_unwrap(self.sandbox) {
            sandbox.stop().await;
        }
        let Ok(conn) = crate::amqp::connect_once(&self.settings.amqp, "weibo-relay stage").await
        else {
            return;
        };
        if let Ok(channel) = conn.create_channel().await {
            if let Err(error) = self.topology.delete(&channel).await {
                tracing::warn!(%error, "stage queues not fully deleted");
            }
            let _ = channel.close(200, "stage done".into()).await;
        }
        let _ = conn.close(200, "stage done".into()).await;
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.relay_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Ok(answer) = reqwest::get(&url).await {
                if answer.status().is_success() {
                    return Ok(());
                }
                last = answer.text().await.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the relay was not ready within {READY_TIMEOUT:?} ({last}); is RabbitMQ running at {}?",
            self.settings.amqp.redacted_url()
        )
    }
}

/// `base` with names unique to one run, a loopback listener, and one merchant the sandbox
/// knows, so a run leaves nothing behind and touches no real merchant.
fn staged(mut settings: Settings, prefix: &str) -> Settings {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    settings.http.bind = ([127, 0, 0, 1], 0).into();
    settings.amqp.events_exchange = format!("{prefix}.{run}.events");
    settings.amqp.events_queue = format!("{prefix}.{run}.orders");
    settings.amqp.fulfilment_queue = format!("{prefix}.{run}.fulfilment");
    let secret = |s: &str| SecretString::from(format!("{prefix}-{s}-{run}"));
    settings.merchants = Merchants::new(vec![Merchant {
        appid: STAGE_APPID.into(),
        sign_key: secret("sign-key"),
        client_id: "772915".into(),
        client_secret: secret("client-secret"),
        uid: "1404376560".into(),
    }]);
    settings
}
