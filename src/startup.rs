//! Wiring the roles into one process: `Application::build`, then `run_until_stopped`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::dev::Service;
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::amqp::{Broker, Topology};
use crate::config::Settings;
use crate::http::{ops_routes, push_routes, OpsState, ReceiverState};
use crate::keeper::cluster::{Agent, ClusterNames};
use crate::keeper::{KeeperOptions, TokenKeeper};
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::permits::{PermitMetrics, Permits};
use crate::push::PushRelay;
use crate::reconcile::{ReconcileMetrics, Sweeper};
use crate::supervise::{supervise, Task, TaskMetrics};
use crate::telemetry::LogLimit;
use crate::weibo::WeiboClient;
use crate::worker::{worker_topology, RetryPolicy, Worker, WorkerMetrics};

/// Refusal log lines per second (and burst); the metrics count every refusal regardless.
const REFUSAL_LOG_PER_SEC: std::num::NonZeroU32 = std::num::NonZeroU32::new(10).unwrap();

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

    fn receives_pushes(self) -> bool {
        matches!(self, Self::Serve | Self::Receiver)
    }

    fn runs_worker(self) -> bool {
        matches!(self, Self::Serve | Self::Worker)
    }
}

/// A built, bound, not yet running relay process.
pub struct Application {
    address: SocketAddr,
    server: Server,
    broker: Broker,
    worker: Option<Arc<Worker>>,
    /// The token keeper's broker side, the reconciliation sweeper and the backlog reader.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin_address: Option<SocketAddr>,
    admin_server: Option<actix_web::dev::Server>,
    receiver_publisher: Option<crate::amqp::Publisher>,
    shutdown: CancellationToken,
}

impl Application {
    /// Binds the listener (port 0 picks one), starts the broker connection and, for the
    /// worker, the token keeper; builds the server.
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        // Without a merchant every push would be refused and no call could be made; `check`
        // applies the same rule.
        settings.validate_for_relay()?;
        let listener = TcpListener::bind(settings.http.bind)
            .map_err(|e| anyhow::anyhow!("cannot bind http.bind {}: {e}", settings.http.bind))?;
        let address = listener.local_addr()?;
        let admin_listener = settings
            .http
            .admin_bind
            .map(|bind| {
                TcpListener::bind(bind)
                    .map_err(|e| anyhow::anyhow!("cannot bind http.admin_bind {bind}: {e}"))
            })
            .transpose()?;
        let admin_address = admin_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let mut topology = Topology::events(&settings.amqp, &settings.event_log.max_age);
        if roles.runs_worker() {
            let policy = RetryPolicy::from_settings(&settings.weibo);
            topology = topology.merge(worker_topology(&settings.amqp, &policy));
        }
        let broker = Broker::start(&settings.amqp, topology);
        let metrics = Arc::new(Metrics::new(roles.as_str()));
        let task_metrics = TaskMetrics::register(metrics.registry())?;
        let shutdown = CancellationToken::new();

        let (worker, keeper, tasks) = if roles.runs_worker() {
            let client = WeiboClient::new(&settings.weibo)?;
            let wait = Duration::from_millis(settings.worker.token_wait_ms);
            let options = KeeperOptions {
                wait_timeout: wait,
                ..KeeperOptions::default()
            };
            let (keeper, events) =
                TokenKeeper::new(Arc::new(client.clone()), &settings.merchants, options);
            keeper.metrics().register(metrics.registry())?;
            // One keeper for the deployment, elected through the broker; the platform's rate
            // limit shared by every process through the permits it issues.
            let names = ClusterNames::new(&settings.amqp.fulfilment_queue);
            let agent = Agent::new(
                broker.clone(),
                keeper.clone(),
                names.clone(),
                settings.weibo.rate_limit_per_sec,
            )?
            .spawn(events, shutdown.child_token());
            let permits = Permits::start(
                broker.clone(),
                names.permits_queue,
                wait,
                Keyring::derive(&settings.merchants),
                PermitMetrics::register(metrics.registry())?,
            );
            // Reconciliation runs in every worker process and sweeps only while it leads;
            // should it ever panic, it is restarted rather than silently gone.
            let sweeper = Sweeper::new(
                &settings,
                broker.clone(),
                keeper.clone(),
                client.clone(),
                permits.clone(),
                ReconcileMetrics::register(metrics.registry())?,
            );
            let stop = shutdown.child_token();
            let sweeper = supervise(Task::Sweeper, task_metrics, stop.clone(), move || {
                sweeper.clone().run(stop.clone())
            });
            let worker_metrics = WorkerMetrics::register(metrics.registry())?;
            let worker = Worker::new(
                &settings,
                broker.clone(),
                keeper.clone(),
                permits,
                client,
                worker_metrics,
            );
            // The backlog alert's numbers: the work and dead queues' depths.
            let backlog = crate::worker::backlog::Backlog::register(
                metrics.registry(),
                broker.clone(),
                &settings.amqp.fulfilment_queue,
            )?
            .spawn(shutdown.child_token());
            (
                Some(Arc::new(worker)),
                Some(keeper),
                vec![agent, sweeper, backlog],
            )
        } else {
            (None, None, Vec::new())
        };

        let ops = web::Data::new(OpsState {
            broker: broker.clone(),
            metrics: metrics.clone(),
            keeper,
        });
        let receiver = roles.receives_pushes().then(|| {
            web::Data::new(ReceiverState {
                merchants: settings.merchants.clone(),
                relay: PushRelay::new(
                    broker.clone(),
                    settings.amqp.events_exchange.clone(),
                    settings.push.dedup_capacity,
                    metrics.clone(),
                    crate::keys::Keyring::derive(&settings.merchants),
                ),
                metrics: metrics.clone(),
                max_body_bytes: settings.http.max_body_bytes,
                body_timeout: settings.http.body_timeout(),
                max_skew_secs: settings.push.max_skew_secs,
                refusal_log: LogLimit::per_second(REFUSAL_LOG_PER_SEC),
                success_body: settings.push.success_body.clone().into(),
                success_content_type: settings.push.success_content_type.clone(),
            })
        });
        let receiver_publisher = receiver.as_ref().map(|r| r.relay.publisher().clone());
        let push_path = settings.push.path.clone();
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::config::MAX_HTTP_WORKERS),
            n => n,
        };
        let ops_on_main = admin_listener.is_none();
        let main_ops = ops.clone();
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap_fn(|mut req, srv| {
                    crate::http::unpin_from_read_buffer(&mut req);
                    // With span export, the caller's trace is the parent of the handler's.
                    let span = crate::trace::TraceContext::request_span(req.headers());
                    tracing::Instrument::instrument(srv.call(req), span)
                })
                .default_service(web::to(not_found));
            if ops_on_main {
                app = app.app_data(main_ops.clone()).configure(ops_routes);
            }
            if let Some(receiver) = &receiver {
                app = app
                    .app_data(receiver.clone())
                    .configure(push_routes(&push_path));
            }
            app
        })
        .workers(workers)
        // actix counts connections per listener thread; the setting is for the whole process.
        .max_connections(settings.http.max_connections.div_ceil(workers))
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_timeout_secs)
        .client_request_timeout(Duration::from_secs(5))
        .run();
        // Health checks and scrapes on their own listener and thread: a flood on the push
        // port cannot delay them.
        let admin_server = match admin_listener {
            Some(listener) => Some(
                HttpServer::new(move || {
                    App::new()
                        .app_data(ops.clone())
                        .configure(ops_routes)
                        .default_service(web::to(not_found))
                })
                .workers(1)
                .listen(listener)?
                .disable_signals()
                .shutdown_timeout(settings.http.shutdown_timeout_secs)
                .client_request_timeout(Duration::from_secs(5))
                .run(),
            ),
            None => None,
        };
        match admin_address {
            Some(admin) => tracing::info!(
                %address, admin_address = %admin, ?roles, push_path = %settings.push.path,
                "listening"
            ),
            None => tracing::info!(%address, ?roles, push_path = %settings.push.path, "listening"),
        }
        Ok(Self {
            address,
            admin_address,
            admin_server,
            server,
            broker,
            worker,
            tasks,
            receiver_publisher,
            shutdown,
        })
    }

    /// The bound address (the real port when `http.bind` asked for 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The admin listener's address, when `http.admin_bind` is set.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Cancelling this token stops the process gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The broker connection, shared by every role.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves until the shutdown token is cancelled: stops taking pushes and commands, lets
    /// in-flight ones (and their publishes and calls) finish, then closes the broker connection.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let admin_handle = self.admin_server.as_ref().map(|s| s.handle());
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new requests, finishing in-flight ones");
            handle.stop(true).await;
            // Health and metrics answer until the pushes are done.
            if let Some(admin) = admin_handle {
                admin.stop(true).await;
            }
        });
        let admin = self.admin_server.map(tokio::spawn);
        let worker = self
            .worker
            .map(|w| tokio::spawn(w.run(self.shutdown.child_token())));
        self.server.await?;
        if let Some(admin) = admin {
            admin.await??;
        }
        if let Some(worker) = worker {
            worker.await?;
        }
        for task in self.tasks {
            task.await?;
        }
        if let Some(publisher) = &self.receiver_publisher {
            publisher.close().await;
        }
        self.broker.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Any other path or method: the contract's `{code, msg}` shape, never an empty body.
async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound().json(serde_json::json!({"code": 40400, "msg": "not found"}))
}
