//! The one harness the tests, the demo and the benches share: a stage on the local broker with
//! names of its own (`<prefix>.<run>.*`), optionally the sandbox platform, a relay in this
//! process and any number more as processes, and everything they declared deleted afterwards,
//! also when whoever ran the stage panicked half-way.

mod builder;
mod port;
mod process;
mod settings;
mod teardown;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sandbox::{Faults, SandboxHandle};
use weibo_relay::amqp::Broker;
use weibo_relay::settings::{AmqpSettings, Settings};

pub use builder::StageBuilder;
pub use port::spare_port;
pub use process::{KillOnDrop, NeverListened, RelayProcess};
pub use settings::{isolated, merchant, to_toml, ConfigFile};
pub use teardown::{delete_on, Teardown};

/// The appid of the one merchant on a demo or bench stage.
pub const STAGE_APPID: &str = "100023";
/// What to do when no broker answers: the README section that says how to get one.
pub const NO_BROKER_HINT: &str = "RabbitMQ is needed: `bash .ci/demo` starts one where it can (apt or Docker); otherwise README, \"Get Rust and RabbitMQ\", says how; another broker: --amqp-url URL or amqp.url";
/// Broker link and first token: beyond this the set-up, not the relay, is what failed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The sandbox platform of a stage.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    /// Faults it injects from the start (`/admin/faults` changes them later).
    pub faults: Faults,
    /// Life of the tokens it issues.
    pub token_ttl: Duration,
    /// Provider mode: the provider's app on the platform's OAuth2 side.
    pub oauth2: Option<crate::sandbox::OAuth2App>,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            token_ttl: Duration::from_secs(7200),
            oauth2: None,
        }
    }
}

/// How far the in-process relay must have come before [`StageBuilder::start`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Not at all (a test of a relay that cannot reach its broker).
    No,
    /// Its broker connection is up.
    Broker,
    /// `/readyz` answers 200: the broker, and for a worker a token for every merchant.
    Full,
}

/// A relay running in this process.
struct InProcess {
    url: String,
    admin_url: Option<String>,
    gateway_url: Option<String>,
    broker: Broker,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A running stage; [`Stage::stop`] (or dropping it) removes everything it declared.
pub struct Stage {
    settings: Settings,
    sandbox: Option<Arc<SandboxHandle>>,
    relay: Option<InProcess>,
    teardown: Option<Teardown>,
}

impl Stage {
    /// The stage's settings (names, the platform's URLs).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The sandbox platform.
    ///
    /// # Panics
    /// On a stage started without one.
    pub fn sandbox(&self) -> &Arc<SandboxHandle> {
        self.sandbox
            .as_ref()
            .expect("a stage started with a platform")
    }

    /// `http://addr` of the in-process relay.
    ///
    /// # Panics
    /// On a stage started without one.
    pub fn relay_url(&self) -> &str {
        &self.in_process().url
    }

    /// `http://addr` of the in-process relay's admin listener, when `http.admin_bind` is set.
    pub fn admin_url(&self) -> Option<&str> {
        self.relay.as_ref().and_then(|r| r.admin_url.as_deref())
    }

    /// `http://addr` of the in-process relay's platform gateway, when `gateway.bind` is set.
    pub fn gateway_url(&self) -> Option<&str> {
        self.relay.as_ref().and_then(|r| r.gateway_url.as_deref())
    }

    /// Starts another relay on this stage's settings, as a process of `binary`.
    pub fn spawn(&self, binary: impl AsRef<Path>, role: &str, rust_log: &str) -> RelayProcess {
        self.spawn_with(binary, role, rust_log, |_| {})
    }

    /// Like [`spawn`](Self::spawn), with `adjust` applied to its copy of the settings (one
    /// process through a proxy, say).
    pub fn spawn_with(
        &self,
        binary: impl AsRef<Path>,
        role: &str,
        rust_log: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> RelayProcess {
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        RelayProcess::start(binary, role, &to_toml(&settings), rust_log)
    }

    /// Stops the in-process relay as SIGTERM does and returns how it ended; the platform and
    /// the queues stay.
    pub async fn stop_relay(&mut self) -> anyhow::Result<()> {
        let Some(relay) = self.relay.as_mut() else {
            return Ok(());
        };
        relay.shutdown.cancel();
        match relay.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Stops the relay gracefully, then the sandbox, then deletes the stage's queues.
    pub async fn stop(mut self) {
        let _ = self.stop_relay().await;
        if let Some(sandbox) = self.sandbox.take() {
            if let Ok(sandbox) = Arc::try_unwrap(sandbox) {
                sandbox.stop().await;
            }
        }
        if let Some(teardown) = self.teardown.take() {
            if let Err(error) = teardown.run().await {
                tracing::warn!(%error, "stage queues not fully deleted");
            }
        }
    }

    fn in_process(&self) -> &InProcess {
        self.relay
            .as_ref()
            .expect("a stage started with an in-process relay")
    }

    async fn wait(&self, ready: Ready) -> anyhow::Result<()> {
        let relay = self.in_process();
        match ready {
            Ready::No => Ok(()),
            Ready::Broker => {
                if relay.broker.wait_ready(READY_TIMEOUT).await {
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the relay did not connect to RabbitMQ at {} within {READY_TIMEOUT:?}",
                        self.settings.amqp.redacted_url()
                    )
                }
            }
            Ready::Full => {
                let url = format!("{}/readyz", relay.admin_url.as_ref().unwrap_or(&relay.url));
                let deadline = Instant::now().later(READY_TIMEOUT);
                let mut last = String::from("no answer");
                while Instant::now() < deadline {
                    if let Ok(answer) = reqwest::get(&url).await {
                        if answer.status().is_success() {
                            return Ok(());
                        }
                        last = answer.text().await.unwrap_or_default();
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                anyhow::bail!(
                    "the relay was not ready within {READY_TIMEOUT:?} ({last}); is RabbitMQ running at {}?",
                    self.settings.amqp.redacted_url()
                )
            }
        }
    }
}

/// `<events_queue>.tap`: the quorum queue a test stage binds to every order event. The relay
/// declares no such queue (its event log is a stream); tests read this one instead.
pub fn tap_queue(settings: &Settings) -> String {
    weibo_relay::amqp::Names::new(&settings.amqp).tap()
}

/// A plain connection to one URL given on a command line (the load generators), without
/// TLS files; the error says why, password hidden.
pub async fn connect_url(
    url: &weibo_relay::settings::AmqpUrl,
    name: &str,
) -> Result<lapin::Connection, String> {
    weibo_relay::amqp::connect_node(url.uri(), &Default::default(), name)
        .await
        .map_err(|error| format!("cannot connect to the broker: {}: {error}", url.shown()))
}

async fn declare_tap(amqp: &AmqpSettings, settings: &Settings) -> anyhow::Result<()> {
    let tap = tap_queue(settings);
    let exchange = &settings.amqp.events_exchange;
    let topology = weibo_relay::amqp::Topology::default()
        .exchange(exchange)
        .queue(weibo_relay::amqp::QueueSpec::quorum(&tap))
        .bind(&tap, exchange, "order.#")
        .bind(&tap, exchange, "merchant.#");
    let connection = weibo_relay::amqp::connect_once(amqp, "weibo-relay stage tap").await?;
    let declared = topology.declare(&connection).await;
    let _ = connection.close(200, "tap declared".into()).await;
    Ok(declared?)
}

impl Drop for Stage {
    /// A stage dropped without [`Stage::stop`] (a panic): the relay is told to stop, and the
    /// teardown deletes the queues.
    fn drop(&mut self) {
        if let Some(relay) = &self.relay {
            relay.shutdown.cancel();
        }
    }
}
