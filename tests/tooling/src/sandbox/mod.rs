//! A simulated Weibo platform (platform spec sections 3 and 4) for tests and the `sandbox`
//! command: token issue, order interfaces with a per-order state machine, fault injection
//! and an admin API. Orders publish their state changes so a push sender can be added.

mod admin;
mod catalogue;
mod faults;
mod goods;
mod list;
mod oauth2;
mod orders;
mod platform;
mod pusher;
mod state;
mod token_book;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use weibo_relay::clock::Later;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::sync::mpsc;

use state::SandboxState;
use weibo_relay::settings::Merchants;

pub use faults::{ErrorEnvelope, Faults, ListJunk};
pub use oauth2::{OAuth2App, OAuth2Counters, OAuth2Faults, OAuth2State};
pub use orders::{Order, OrderEvent, CLOSED, FINISHED, PAID, TIMED_OUT};
pub use pusher::{PushSchedule, PushSender, PushStats};

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Listen address; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The merchants the platform knows (appid, sign_key, client_id, client_secret, uid).
    pub merchants: Merchants,
    /// Life of an issued token.
    pub token_ttl: Duration,
    /// Faults from the start (the admin API changes them).
    pub faults: Faults,
    /// A service provider's app for the OAuth2 endpoints (none: they know no client).
    pub oauth2: Option<OAuth2App>,
}

impl SandboxConfig {
    /// Loopback, a free port, 2 h tokens, no faults.
    pub fn new(merchants: Merchants) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            merchants,
            token_ttl: Duration::from_secs(7200),
            faults: Faults::default(),
            oauth2: None,
        }
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("invalid sandbox configuration: {0}")]
    Invalid(&'static str),
}

/// The simulated platform.
pub struct Sandbox;

/// A running sandbox.
pub struct SandboxHandle {
    addr: SocketAddr,
    server: ServerHandle,
    state: web::Data<SandboxState>,
    oauth2: web::Data<OAuth2State>,
}

impl Sandbox {
    /// Binds and starts serving on the current tokio runtime.
    pub fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        admin::validate(&config.faults).map_err(SandboxError::Invalid)?;
        if config.token_ttl.is_zero() {
            return Err(SandboxError::Invalid("token_ttl must be at least 1 s"));
        }
        let bind_error = |source| SandboxError::Bind {
            addr: config.bind,
            source,
        };
        let listener = TcpListener::bind(config.bind).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let oauth2 = web::Data::new(OAuth2State::new(config.oauth2));
        let state = web::Data::new(
            SandboxState::new(config.merchants, config.token_ttl, config.faults)
                .with_grants(oauth2.clone()),
        );
        let shared = state.clone();
        let oauth2_shared = oauth2.clone();
        let catalogue = web::Data::new(catalogue::Catalogue::defaults());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(catalogue.clone())
                .app_data(oauth2_shared.clone())
                .configure(routes)
                .configure(oauth2::routes)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(bind_error)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::info!(%addr, "sandbox listening");
        Ok(SandboxHandle {
            addr,
            server: handle,
            state,
            oauth2,
        })
    }
}

impl SandboxHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, the `weibo.oauth_base` for a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://addr/2/proxy/eshop/open`, the `weibo.api_base` for a client (the platform's
    /// real path under its own host).
    pub fn api_base(&self) -> String {
        format!("{}{API_PATH}", self.base_url())
    }

    /// Order state changes from now on, for a push sender.
    pub fn subscribe_orders(&self) -> mpsc::UnboundedReceiver<OrderEvent> {
        self.state.lock().orders.subscribe()
    }

    /// Creates `count` paid orders for `appid` (as `POST /admin/orders` does).
    pub fn create_orders(&self, appid: &str, count: usize) -> Vec<String> {
        self.state.lock().orders.create(appid, count, PAID)
    }

    /// Creates `count` paid orders of a provider's merchant `uid` under the provider's
    /// `appid`: only that merchant's token lists them.
    pub fn create_merchant_orders(&self, appid: &str, uid: &str, count: usize) -> Vec<String> {
        self.state
            .lock()
            .orders
            .create_for(appid, Some(uid), count, PAID)
    }

    /// A snapshot of one order.
    pub fn order(&self, appid: &str, sub_order_id: &str) -> Option<Order> {
        self.state.lock().orders.get(appid, sub_order_id).cloned()
    }

    /// The merchants the platform knows.
    pub fn merchants(&self) -> &weibo_relay::settings::Merchants {
        self.state.merchants()
    }

    /// Makes the platform give up on every push for `length` from now, as after a long
    /// outage of the merchant's URL: those order changes are never delivered.
    pub fn start_outage(&self, length: Duration) {
        self.state.lock().outage_until = Some(std::time::Instant::now().later(length));
    }

    /// True while pushes are being given up.
    pub fn in_outage(&self) -> bool {
        self.state
            .lock()
            .outage_until
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    /// The OAuth2 side: counters, faults, approvals, cancel callbacks.
    pub fn oauth2(&self) -> &OAuth2State {
        &self.oauth2
    }

    /// Every access_token issued (and not yet forgotten): what must never leave the relay.
    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().tokens.values().cloned().collect()
    }

    /// Calls of `interface` (its name without the group) received so far, answered or not.
    pub fn received(&self, interface: &str) -> u64 {
        self.state
            .lock()
            .received
            .get(interface)
            .copied()
            .unwrap_or(0)
    }

    /// The shipment the catalogue's `retailerAddExpress` recorded for a sub order.
    pub fn express(&self, appid: &str, sub_order_id: &str) -> Option<serde_json::Value> {
        self.state
            .lock()
            .goods
            .express(appid, sub_order_id)
            .cloned()
    }

    /// Stops serving, finishing in-flight requests.
    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Where the e-commerce interfaces live under the platform's host.
const API_PATH: &str = "/2/proxy/eshop/open";

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/shop/authorize", web::get().to(platform::authorize))
        .service(
            web::scope(API_PATH)
                .route("/order/retailerFinishSub", web::post().to(platform::finish))
                .route("/order/retailerCloseSub", web::post().to(platform::close))
                .route("/order/retailerGetSub", web::get().to(platform::get_sub))
                .route(
                    "/order/retailerGetSubList",
                    web::get().to(platform::get_sub_list),
                )
                // The rest of the catalogue (and the order ones by the other method).
                .route("/{group}/{name}", web::route().to(catalogue::interface)),
        )
        .route("/admin/orders", web::post().to(admin::create_orders))
        .route(
            "/admin/orders/{appid}/{sub_order_id}",
            web::get().to(admin::get_order),
        )
        .route("/admin/counters", web::get().to(admin::counters))
        .route("/admin/requests", web::get().to(admin::requests))
        .route("/admin/timeline", web::get().to(admin::timeline))
        .route("/admin/outage", web::post().to(admin::outage))
        .route("/admin/faults", web::get().to(admin::get_faults))
        .route("/admin/faults", web::post().to(admin::set_faults))
        .route("/admin/tokens/revoke", web::post().to(admin::revoke_tokens));
}
