//! The HTTP listeners: pushes (and, without an admin listener, health, readiness and
//! metrics) on `http.bind`; health, readiness and metrics on `http.admin_bind` when set.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use super::Roles;
use crate::gateway::Gateway;
use crate::http::{ops_routes, push_routes, OpsState, ReceiverState};
use crate::provider::pages::PagesState;
use crate::settings::{HttpSettings, Settings};

/// How long a client may take to send a request's head.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound, not yet serving listeners.
pub(super) struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
    gateway: Option<TcpListener>,
}

impl Listeners {
    /// Binds `http.bind`, `http.admin_bind` and the gateway's; the error names the key.
    pub(super) fn bind(http: &HttpSettings, gateway: Option<SocketAddr>) -> anyhow::Result<Self> {
        let main = TcpListener::bind(http.bind)
            .map_err(|e| anyhow::anyhow!("cannot bind http.bind {}: {e}", http.bind))?;
        let admin = http
            .admin_bind
            .map(|bind| {
                TcpListener::bind(bind)
                    .map_err(|e| anyhow::anyhow!("cannot bind http.admin_bind {bind}: {e}"))
            })
            .transpose()?;
        let gateway = gateway
            .map(|bind| {
                TcpListener::bind(bind)
                    .map_err(|e| anyhow::anyhow!("cannot bind gateway.bind {bind}: {e}"))
            })
            .transpose()?;
        Ok(Self {
            main,
            admin,
            gateway,
        })
    }
}

/// The running servers.
pub(super) struct Servers {
    address: SocketAddr,
    admin_address: Option<SocketAddr>,
    gateway_address: Option<SocketAddr>,
    main: Server,
    admin: Option<Server>,
    gateway: Option<Server>,
}

/// What the gateway's listener serves: the platform gateway (self-developed mode) or the
/// merchants API (provider mode).
pub(super) enum GatewayApp {
    /// `/v1/platform/...`.
    Platform(web::Data<Gateway>),
    /// `/v1/merchants...`.
    Merchants(web::Data<crate::provider::api::MerchantsApi>),
}

impl Servers {
    /// Builds the servers on `listeners`; they serve once polled.
    pub(super) fn start(
        listeners: Listeners,
        ops: OpsState,
        receiver: Option<web::Data<ReceiverState>>,
        pages: Option<web::Data<PagesState>>,
        gateway: Option<GatewayApp>,
        settings: &Settings,
    ) -> anyhow::Result<Self> {
        let http = &settings.http;
        let address = listeners.main.local_addr()?;
        let admin_address = listeners
            .admin
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let ops = web::Data::new(ops);
        let ops_on_main = listeners.admin.is_none().then(|| ops.clone());
        let push_path = settings.push.path.clone();
        let workers = match http.workers.as_usize() {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::settings::MAX_HTTP_WORKERS),
            n => n,
        };
        let shutdown_timeout = http.shutdown_timeout_secs.get().as_secs();
        let main = HttpServer::new(move || {
            let mut app = App::new()
                .wrap_fn(|mut req, srv| {
                    crate::http::unpin_from_read_buffer(&mut req);
                    // With span export, the caller's trace is the parent of the handler's.
                    #[cfg(feature = "otel")]
                    {
                        let span = crate::trace::TraceContext::request_span(req.headers());
                        tracing::Instrument::instrument(srv.call(req), span)
                    }
                    // Without it there is no span to enter: the handler's future is not
                    // wrapped (and moved again) for nothing.
                    #[cfg(not(feature = "otel"))]
                    srv.call(req)
                })
                .default_service(web::to(not_found));
            if let Some(ops) = &ops_on_main {
                app = app.app_data(ops.clone()).configure(ops_routes);
            }
            if let Some(receiver) = &receiver {
                app = app
                    .app_data(receiver.clone())
                    .configure(push_routes(&push_path));
            }
            // The merchant's browser and Weibo's cancel callback reach the connect pages where
            // the platform reaches the pushes.
            if let Some(pages) = &pages {
                app = app.configure(crate::provider::pages::configure(pages.clone()));
            }
            app
        })
        .workers(workers)
        // actix counts connections per listener thread; the setting is for the whole process.
        .max_connections(http.max_connections.as_usize().div_ceil(workers))
        .listen(listeners.main)?
        .disable_signals()
        .shutdown_timeout(shutdown_timeout)
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .run();
        // Health checks and scrapes on their own listener and thread: a flood on the push
        // port cannot delay them.
        let admin = match listeners.admin {
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
                .shutdown_timeout(shutdown_timeout)
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .run(),
            ),
            None => None,
        };
        // The gateway faces the merchant's own network, never the push port's internet.
        let (gateway_address, gateway) = match (listeners.gateway, gateway) {
            (Some(listener), Some(GatewayApp::Platform(gateway))) => (
                Some(listener.local_addr()?),
                Some(crate::gateway::serve(
                    listener,
                    gateway,
                    http.max_connections.as_usize(),
                    shutdown_timeout,
                )?),
            ),
            (Some(listener), Some(GatewayApp::Merchants(api))) => (
                Some(listener.local_addr()?),
                Some(crate::provider::api::serve(
                    listener,
                    api,
                    shutdown_timeout,
                )?),
            ),
            _ => (None, None),
        };
        Ok(Self {
            address,
            admin_address,
            gateway_address,
            main,
            admin,
            gateway,
        })
    }

    /// The push listener's address.
    pub(super) fn address(&self) -> SocketAddr {
        self.address
    }

    /// The admin listener's address, when there is one.
    pub(super) fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// The gateway listener's address, when there is one.
    pub(super) fn gateway_address(&self) -> Option<SocketAddr> {
        self.gateway_address
    }

    /// The line tests, tools and operators look for: where the process listens.
    pub(super) fn log_listening(&self, roles: Roles, push_path: &str) {
        let address = self.address;
        if let Some(gateway) = self.gateway_address {
            tracing::info!(gateway_address = %gateway, "platform gateway listening");
        }
        match self.admin_address {
            Some(admin) => tracing::info!(
                %address, admin_address = %admin, ?roles, push_path = %push_path,
                "listening"
            ),
            None => tracing::info!(%address, ?roles, push_path = %push_path, "listening"),
        }
    }

    /// Serves until `stop`; then takes no new requests and lets in-flight ones finish
    /// (health and metrics answer until the pushes are done).
    pub(super) async fn run_until(self, stop: CancellationToken) -> anyhow::Result<()> {
        let handle = self.main.handle();
        let admin_handle = self.admin.as_ref().map(Server::handle);
        let gateway_handle = self.gateway.as_ref().map(Server::handle);
        let stopping = tokio::spawn(async move {
            stop.cancelled().await;
            tracing::info!("shutting down: no new requests, finishing in-flight ones");
            if let Some(gateway) = gateway_handle {
                gateway.stop(true).await;
            }
            handle.stop(true).await;
            if let Some(admin) = admin_handle {
                admin.stop(true).await;
            }
        });
        let admin = self.admin.map(tokio::spawn);
        let gateway = self.gateway.map(tokio::spawn);
        let served = self.main.await;
        if let Some(gateway) = gateway {
            match gateway.await {
                Ok(Err(error)) => tracing::warn!(%error, "gateway server failed"),
                Err(error) => tracing::warn!(%error, "gateway server task failed"),
                Ok(Ok(())) => {}
            }
        }
        let admin_served = match admin {
            Some(admin) => admin
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| Ok(r?)),
            None => Ok(()),
        };
        stopping.abort();
        served?;
        admin_served
    }
}

/// Any other path or method: the contract's `{code, msg}` shape, never an empty body.
async fn not_found() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NotFound().json(serde_json::json!({"code": 40400, "msg": "not found"}))
}
