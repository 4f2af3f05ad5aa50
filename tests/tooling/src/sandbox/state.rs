//! Everything the sandbox remembers, behind one lock (calls are tiny; consistency is simple).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

use super::faults::{FaultState, Faults};
use super::orders::OrderStore;
use super::token_book::TokenBook;
use weibo_relay::settings::{Merchant, Merchants};

/// Requests kept for `GET /admin/requests`.
const RECORDED: usize = 100;
/// Order call times kept for `GET /admin/timeline`.
const TIMELINE: usize = 200_000;

/// One platform request as received (access_token redacted).
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Endpoint name, such as `retailerFinishSub`.
    pub endpoint: String,
    /// Every parameter sent.
    pub params: BTreeMap<String, String>,
}

/// The mutable part of the sandbox.
pub struct World {
    /// Issued tokens.
    pub tokens: TokenBook,
    /// Sub orders.
    pub orders: OrderStore,
    /// Fault injection.
    pub faults: FaultState,
    /// Goods, PINs and shipments (the catalogue's state model).
    pub goods: super::goods::GoodsStore,
    /// Calls by interface name as they arrived, before any fault or check.
    pub received: BTreeMap<String, u64>,
    /// Calls by endpoint, then by answer code (`http_503` for injected failures).
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// The latest requests, oldest first.
    pub requests: VecDeque<Recorded>,
    /// When each order call arrived, in milliseconds since the sandbox started.
    pub timeline: Vec<u64>,
    /// Until then the platform gives up on every push instead of delivering it.
    pub outage_until: Option<std::time::Instant>,
    started: std::time::Instant,
}

impl World {
    /// Counts one answered call.
    pub fn count(&mut self, endpoint: &str, code: impl ToString) {
        *self
            .calls
            .entry(endpoint.to_owned())
            .or_default()
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// Counts one call on arrival.
    pub fn receive(&mut self, endpoint: &str) {
        *self.received.entry(endpoint.to_owned()).or_default() += 1;
    }

    /// Notes the arrival of one order call (the platform's view of a caller's rate).
    pub fn arrived(&mut self) {
        if self.timeline.len() < TIMELINE {
            self.timeline
                .push(self.started.elapsed().as_millis() as u64);
        }
    }

    /// Remembers one request, without its access_token.
    pub fn record(&mut self, endpoint: &str, params: &BTreeMap<String, String>) {
        let mut params = params.clone();
        if let Some(token) = params.get_mut("access_token") {
            *token = "[redacted]".into();
        }
        if self.requests.len() == RECORDED {
            self.requests.pop_front();
        }
        self.requests.push_back(Recorded {
            endpoint: endpoint.to_owned(),
            params,
        });
    }
}

/// The sandbox's `web::Data`: configuration plus the locked world.
pub struct SandboxState {
    merchants: Merchants,
    world: Mutex<World>,
    /// The OAuth2 side, whose merchants' tokens a provider calls the order interfaces with.
    grants: Option<actix_web::web::Data<super::OAuth2State>>,
}

impl SandboxState {
    /// A fresh platform for `merchants`.
    pub fn new(merchants: Merchants, token_ttl: Duration, faults: Faults) -> Self {
        Self {
            merchants,
            world: Mutex::new(World {
                tokens: TokenBook::new(token_ttl),
                orders: OrderStore::default(),
                faults: FaultState::new(faults),
                goods: Default::default(),
                received: BTreeMap::new(),
                calls: BTreeMap::new(),
                requests: VecDeque::new(),
                timeline: Vec::new(),
                outage_until: None,
                started: std::time::Instant::now(),
            }),
            grants: None,
        }
    }

    /// Order interfaces also take the tokens `grants` issued to a provider's merchants.
    pub fn with_grants(mut self, grants: actix_web::web::Data<super::OAuth2State>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// Provider mode: the uid whose OAuth2 token this is (counting the call), or the token
    /// code to answer.
    pub fn provider_call(&self, access_token: &str) -> Option<Result<String, i64>> {
        self.grants.as_ref().map(|g| g.accept_call(access_token))
    }

    /// The world, even if a handler panicked while holding it (its data stays usable).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every merchant the platform knows.
    pub fn merchants(&self) -> &Merchants {
        &self.merchants
    }

    /// The merchant with this appid.
    pub fn merchant(&self, appid: &str) -> Option<&Merchant> {
        self.merchants.get(appid)
    }

    /// The merchant with this open-platform client_id.
    pub fn merchant_by_client_id(&self, client_id: &str) -> Option<&Merchant> {
        self.merchants.iter().find(|m| m.client_id() == client_id)
    }
}
