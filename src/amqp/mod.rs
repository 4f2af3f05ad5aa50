//! The broker connection: one supervised connection per process that reconnects by itself,
//! re-declares the topology, and gives every role a confirmed publisher.

mod names;
mod publish;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::settings::{AmqpSettings, Endpoint};
use crate::supervise::{Task, Tasks};

pub use names::Names;
pub use publish::{confirm_channel, publish_confirmed, Outgoing, PublishError, Publisher};
pub use topology::{QueueSpec, Topology};

/// How long one connection attempt to one node (TCP, TLS, handshake, declarations) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a live link is checked, besides the connection's own error events.
const HEALTH_TICK: Duration = Duration::from_millis(500);
/// How often a live link declares the topology again.
const REDECLARE_EVERY: Duration = Duration::from_secs(300);
/// Pause before a role serves on the current link again after its last stint ended, so a
/// queue that keeps failing cannot turn into a busy loop.
const RESUME_PAUSE: Duration = Duration::from_secs(1);

/// One established connection. Roles open their own channels on it, so a channel that fails
/// (a refused publish, a deleted queue) costs only the role that owns it.
#[derive(Clone)]
pub struct Link {
    connection: Arc<Connection>,
    id: u64,
}

impl Link {
    /// The connection, for roles that open their own (consumer) channels.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// True when both are the same connection.
    pub fn same_as(&self, other: &Link) -> bool {
        self.id == other.id
    }

    /// True while the connection is open.
    pub fn is_up(&self) -> bool {
        self.connection.status().connected()
    }
}

/// The supervised broker connection shared by every role of the process.
#[derive(Clone)]
pub struct Broker {
    link: watch::Receiver<Option<Link>>,
    topology: Arc<Topology>,
    confirm_timeout: Duration,
    /// The supervisor's group: stopped last, once the roles using the link have stopped.
    tasks: Tasks,
}

impl Broker {
    /// Starts connecting in the background, as a task of a group of its own under `tasks`;
    /// until a link is up, publishes fail fast. The nodes and TLS files are those the
    /// settings parsed: nothing is parsed here.
    pub fn start(settings: &AmqpSettings, topology: Topology, tasks: &Tasks) -> Self {
        let (tx, rx) = watch::channel(None);
        let tasks = tasks.child();
        let topology = Arc::new(topology);
        let supervisor = Supervisor {
            endpoints: Arc::new(settings.endpoints()),
            tls: settings.tls(),
            topology: topology.clone(),
            events_queue: settings.events_queue.clone(),
            min_delay: settings.reconnect_min_ms.get(),
            max_delay: settings.reconnect_max_ms.get(),
            link: tx,
        };
        tasks.spawn(Task::Broker, move |stop| supervisor.clone().run(stop));
        Self {
            link: rx,
            topology,
            confirm_timeout: settings.confirm_timeout_ms.get(),
            tasks,
        }
    }

    /// True while a connection and its publishing channel are open.
    pub fn is_ready(&self) -> bool {
        self.link.borrow().as_ref().is_some_and(Link::is_up)
    }

    /// The current link, if any.
    pub fn current(&self) -> Option<Link> {
        self.link.borrow().clone()
    }

    /// A publisher with a confirm channel of its own, opened on first use and reopened after
    /// it fails; give each role its own.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.clone(), self.confirm_timeout)
    }

    /// Declares the topology again on the current connection (a queue of ours was deleted
    /// under us); the connection itself is left alone.
    pub async fn declare_topology(&self) -> Result<(), lapin::Error> {
        let link = self.current().ok_or(lapin::Error::from(
            lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
        ))?;
        declare_on(&link.connection, &self.topology).await
    }

    /// A receiver that sees every new link (and `None` while disconnected).
    pub fn subscribe(&self) -> watch::Receiver<Option<Link>> {
        self.link.clone()
    }

    /// Waits until the broker is ready, or `timeout` passes; returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.link.clone();
        let ready = rx.wait_for(|l| l.as_ref().is_some_and(Link::is_up));
        tokio::time::timeout(timeout, ready)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs `serve` on the current link, and again each time it returns (after a pause), on
    /// whatever link is current then, until `stop`: how a role follows the connection
    /// through every reconnection. `serve` ends a stint by returning (its channel failed,
    /// its consumer was cancelled, the link was lost); it says itself why, when that matters.
    pub async fn on_each_link<F, Fut>(&self, stop: &CancellationToken, mut serve: F)
    where
        F: FnMut(Link) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut links = self.subscribe();
        loop {
            let link = tokio::select! {
                _ = stop.cancelled() => return,
                link = links.wait_for(Option::is_some) => match link {
                    Ok(link) => link.clone(),
                    Err(_) => return,
                },
            };
            let Some(link) = link else { continue };
            serve(link).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RESUME_PAUSE) => {}
            }
        }
    }

    /// Closes the connection after in-flight work; call once the roles have stopped.
    pub async fn shutdown(&self) {
        self.tasks.shutdown().await;
    }
}

#[derive(Clone)]
struct Supervisor {
    /// The cluster's nodes, and each as logs show it.
    endpoints: Arc<Vec<Endpoint>>,
    tls: lapin::tcp::OwnedTLSConfig,
    topology: Arc<Topology>,
    /// The catch-all queue earlier releases declared, looked for on each connection.
    events_queue: String,
    min_delay: Duration,
    max_delay: Duration,
    link: watch::Sender<Option<Link>>,
}

impl Supervisor {
    async fn run(self, stop: CancellationToken) {
        let mut delay = self.min_delay;
        // Unique across restarts of the supervisor: a link is never taken for an older one.
        let mut next_id = self.link.borrow().as_ref().map_or(0, |l| l.id);
        // A restarted supervisor does not know whether the link it left is healthy.
        self.link.send_replace(None);
        while !stop.is_cancelled() {
            next_id += 1;
            if let Some((link, node)) = self.connect_to_any(next_id, &stop).await {
                tracing::info!(node = %node, "broker connected, topology declared");
                topology::warn_if_events_queue_left_over(&link.connection, &self.events_queue)
                    .await;
                delay = self.min_delay;
                self.link.send_replace(Some(link.clone()));
                let reason = self.wait_until_broken(&link, &stop).await;
                self.link.send_replace(None);
                if stop.is_cancelled() {
                    let _ = link.connection.close(200, "shutting down".into()).await;
                    tracing::info!("broker connection closed");
                    return;
                }
                tracing::warn!(node = %node, %reason, "broker connection lost; reconnecting");
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    link.connection.close(320, "reconnecting".into()),
                )
                .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = delay.saturating_mul(2).min(self.max_delay);
        }
    }

    /// Tries every node once, starting from a random one, so processes spread over the
    /// cluster; a node that refuses or does not answer in time is passed over at once.
    async fn connect_to_any(&self, id: u64, stop: &CancellationToken) -> Option<(Link, String)> {
        let count = self.endpoints.len();
        let first = rand::random_range(0..count.max(1));
        for i in 0..count {
            let Endpoint { uri, shown: node } = &self.endpoints[(first + i) % count];
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(uri, id)).await {
                Ok(Ok(link)) => return Some((link, node.clone())),
                Ok(Err(error)) => {
                    tracing::warn!(node = %node, %error, "broker connection failed");
                }
                Err(_) => tracing::warn!(node = %node, "broker connection timed out"),
            }
            if stop.is_cancelled() {
                return None;
            }
        }
        None
    }

    async fn connect(&self, uri: &lapin::uri::AMQPUri, id: u64) -> Result<Link, String> {
        let connection = connect_node(uri, &self.tls, "weibo-relay").await?;
        if let Err(error) = declare_on(&connection, &self.topology).await {
            let _ = connection.close(200, "topology not declared".into()).await;
            return Err(error.to_string());
        }
        Ok(Link {
            connection: Arc::new(connection),
            id,
        })
    }

    async fn wait_until_broken(&self, link: &Link, stop: &CancellationToken) -> String {
        let mut events = std::pin::pin!(link.connection.events_listener());
        let mut tick = tokio::time::interval(HEALTH_TICK);
        let mut redeclare = tokio::time::interval_at(
            crate::clock::Later::later(tokio::time::Instant::now(), REDECLARE_EVERY),
            REDECLARE_EVERY,
        );
        loop {
            tokio::select! {
                _ = stop.cancelled() => return "shutdown".into(),
                event = events.next() => match event {
                    Some(Event::Error(error)) => return error.to_string(),
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(%reason, "broker blocked publishing");
                    }
                    Some(Event::ConnectionUnblocked) => tracing::info!("broker unblocked publishing"),
                    Some(_) => {}
                    None => return "connection events ended".into(),
                },
                _ = tick.tick() => if !link.is_up() {
                    return "connection no longer open".into();
                },
                _ = redeclare.tick() => {
                    // Declaring is what keeps the delay queues from expiring (x-expires counts
                    // a publish as no use), and it restores anything deleted under us.
                    if let Err(error) = declare_on(&link.connection, &self.topology).await {
                        tracing::error!(%error, "periodic topology declaration failed");
                    }
                }
            }
        }
    }
}

/// One attempt at one node within [`CONNECT_TIMEOUT`]: every connection the relay and its
/// tools open goes through here. The error says why, without the URL.
pub async fn connect_node(
    uri: &lapin::uri::AMQPUri,
    tls: &lapin::tcp::OwnedTLSConfig,
    name: &str,
) -> Result<Connection, String> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let attempt = async {
        lapin::DefaultConnectionBuilder::new()?
            .with_uri(uri.clone())
            .with_properties(props)
            .with_tls_config(tls.clone())
            .connect()
            .await
    };
    let at = format!("{}:{}", uri.authority.host, uri.authority.port);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(in_words(&error, &at)),
        Err(_) => Err(format!(
            "no answer from {at} within {CONNECT_TIMEOUT:?} (a firewall dropping packets, or a \
             service there that is not RabbitMQ's AMQP port, 5672/5671?)"
        )),
    }
}

/// A failed connection attempt as an operator reads it: what the peer at `at` did, rather
/// than the AMQP parser's terms.
fn in_words(error: &lapin::Error, at: &str) -> String {
    use std::io::ErrorKind as Io;
    let not_amqp = || {
        format!(
            "the peer at {at} does not speak AMQP 0-9-1 (is it RabbitMQ's AMQP port, 5672/5671, \
             and amqps:// exactly when that port wants TLS?)"
        )
    };
    match error.kind() {
        lapin::ErrorKind::ParsingError(_) | lapin::ErrorKind::InvalidProtocolVersion(_) => {
            not_amqp()
        }
        lapin::ErrorKind::IOError(io) => match io.kind() {
            Io::ConnectionRefused => format!("nothing listens at {at} ({io})"),
            Io::UnexpectedEof | Io::ConnectionReset | Io::ConnectionAborted => format!(
                "the peer at {at} closed the connection during the AMQP handshake ({io}): not \
                 RabbitMQ's AMQP port (5672/5671), TLS where the URL says amqp://, or a refused login"
            ),
            _ => format!("{at}: {io}"),
        },
        _ => error.to_string(),
    }
}

/// A plain connection for a short operator command (`dlq`, clean-up): the same nodes and
/// TLS files as the relay, tried in order; the error names every node tried, password hidden.
pub async fn connect_once(settings: &AmqpSettings, name: &str) -> Result<Connection, ConnectError> {
    let tls = settings.tls();
    let mut failures = Vec::new();
    for Endpoint { uri, shown } in settings.endpoints() {
        match connect_node(&uri, &tls, name).await {
            Ok(connection) => return Ok(connection),
            Err(error) => failures.push(format!("{shown}: {error}")),
        }
    }
    Err(ConnectError(failures.join("; ")))
}

/// No node of `amqp.url`/`amqp.urls` took the connection.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the broker: {0}")]
pub struct ConnectError(String);

impl ConnectError {
    /// Each node tried and why it failed (passwords hidden), without the leading words.
    pub fn nodes(&self) -> &str {
        &self.0
    }
}

/// Declares `topology` on short-lived channels of `connection`.
async fn declare_on(connection: &Connection, topology: &Topology) -> Result<(), lapin::Error> {
    topology.declare(connection).await
}
