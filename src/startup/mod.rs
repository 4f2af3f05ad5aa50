//! Wiring the roles into one process: `Application::build`, then `run_until_stopped`.

mod roles;
mod servers;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::web;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::amqp::{Broker, Names, Publisher, Topology};
use crate::http::OpsState;
use crate::metrics::Metrics;
use crate::provider::api::MerchantsApi;
use crate::provider::run::ProviderMetrics;
use crate::settings::Settings;
use crate::supervise::{TaskMetrics, Tasks};

use servers::{GatewayApp, Listeners, Servers};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Receiver, worker and token keeper.
    Serve,
    /// Pushes only.
    Receiver,
    /// Fulfilment worker and token keeper only.
    Worker,
}

impl Roles {
    /// The command that runs these roles: the `role` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Receiver => "receiver",
            Self::Worker => "worker",
        }
    }

    /// True for the roles that take pushes.
    pub fn receives_pushes(self) -> bool {
        matches!(self, Self::Serve | Self::Receiver)
    }

    /// True for the roles that run the fulfilment worker and stand for token keeper.
    pub fn runs_worker(self) -> bool {
        matches!(self, Self::Serve | Self::Worker)
    }
}

/// A built, bound, running relay process, serving once [`run_until_stopped`] is awaited.
///
/// [`run_until_stopped`]: Application::run_until_stopped
pub struct Application {
    servers: Servers,
    broker: Broker,
    /// The process's tasks: the broker link's group, which stops last, is one of its children.
    tasks: Tasks,
    /// What stops first, at the shutdown token: the listeners and the worker's consumer (no
    /// new pushes or commands; those in flight finish).
    serving: Tasks,
    /// What stops once nothing is in flight, since commands in flight still need it: the token
    /// keeper, the permits, the sweeper, the backlog reader.
    support: Tasks,
    receiver_publisher: Option<Publisher>,
    /// An application dropped without running stops what it started.
    _stop_on_drop: DropGuard,
}

impl Application {
    /// Binds the listeners (port 0 picks one), starts the broker connection and each role's
    /// tasks, and builds the servers.
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        // Without a merchant every push would be refused and no call could be made; `check`
        // applies the same rule.
        settings.validate_for_relay()?;
        // The gateway calls through a worker's keeper and permits, with a merchant's own
        // token: it runs where they do, in self-developed mode.
        let runs_gateway = roles.runs_worker() && !settings.merchants.is_empty();
        // Provider mode: the listener serves the merchants API instead, beside the worker.
        let runs_merchants_api = roles.runs_worker() && settings.provider.is_some();
        if settings.gateway.bind.is_some() && !runs_gateway && !runs_merchants_api {
            tracing::warn!(
                ?roles,
                "gateway.bind is set but this process runs no worker for [[merchants]]: no gateway here"
            );
        }
        let gateway_bind = settings
            .gateway
            .bind
            .filter(|_| runs_gateway || runs_merchants_api);
        let listeners = Listeners::bind(&settings.http, gateway_bind)?;
        let metrics = Arc::new(Metrics::new(roles.as_str()));
        let tasks = Tasks::new(TaskMetrics::register(metrics.registry())?);
        // Whatever fails from here on, nothing started is left running.
        let stop_on_drop = tasks.stop_token().clone().drop_guard();
        let names = Names::new(&settings.amqp);
        let topology = Topology::for_roles(&names, &settings, roles);
        let broker = Broker::start(&settings.amqp, topology, &tasks);
        let support = tasks.child();
        let serving = support.child();
        let groups = roles::Groups {
            serving: &serving,
            support: &support,
        };
        let provider_metrics = ProviderMetrics::register(metrics.registry())?;
        let provider = match settings.provider.as_ref() {
            Some(provider) => Some(
                roles::provider(
                    provider.config(),
                    &settings,
                    &names,
                    &broker,
                    provider_metrics,
                    &support,
                )
                .await?,
            ),
            None => None,
        };
        // Provider mode runs the worker too (commands by merchant_ref), but no gateway.
        let parts = roles
            .runs_worker()
            .then(|| {
                roles::worker(
                    &settings,
                    &names,
                    &broker,
                    &metrics,
                    groups,
                    provider.as_ref(),
                )
            })
            .transpose()?;
        let gateway = match (&parts, gateway_bind, &provider) {
            (_, Some(_), Some(provider)) => Some(GatewayApp::Merchants(web::Data::new(
                MerchantsApi::new(&settings.gateway.clients, provider.onboarding.clone()),
            ))),
            (Some(parts), Some(_), None) => Some(GatewayApp::Platform(roles::gateway(
                &settings, parts, &metrics,
            )?)),
            _ => None,
        };
        let keeper = parts.map(|p| p.keeper);
        let receiver = roles
            .receives_pushes()
            .then(|| roles::receiver(&settings, &names, &broker, &metrics, provider.as_ref()));
        let receiver_publisher = receiver.as_ref().map(|r| r.relay.publisher().clone());
        let ops = OpsState {
            broker: broker.clone(),
            metrics,
            keeper,
        };
        let pages = provider.map(|p| p.pages);
        let servers = Servers::start(listeners, ops, receiver, pages, gateway, &settings)?;
        servers.log_listening(roles, &settings.push.path);
        Ok(Self {
            servers,
            broker,
            tasks,
            serving,
            support,
            receiver_publisher,
            _stop_on_drop: stop_on_drop,
        })
    }

    /// The bound address (the real port when `http.bind` asked for 0).
    pub fn address(&self) -> SocketAddr {
        self.servers.address()
    }

    /// The admin listener's address, when `http.admin_bind` is set.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.servers.admin_address()
    }

    /// The gateway listener's address, when it runs in this process.
    pub fn gateway_address(&self) -> Option<SocketAddr> {
        self.servers.gateway_address()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address().port()
    }

    /// Cancelling this token stops the process gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.serving.stop_token().clone()
    }

    /// The broker connection, shared by every role.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves until the shutdown token is cancelled: stops taking pushes and commands, lets
    /// in-flight ones (and their publishes and calls) finish, then closes the broker connection.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self
            .servers
            .run_until(self.serving.stop_token().clone())
            .await;
        // The worker's commands in flight first, while the keeper still leads and permits
        // still come; then the keeper stands down; then the link they all publish on.
        self.serving.shutdown().await;
        self.support.shutdown().await;
        if let Some(publisher) = &self.receiver_publisher {
            publisher.close().await;
        }
        self.broker.shutdown().await;
        self.tasks.shutdown().await;
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}
