//! The token keeper (platform spec section 3): each process's holder of one access_token per
//! merchant. Issuing a token invalidates the previous one, so only one process of a deployment
//! ever asks for tokens: the one that leads ([`TokenKeeper::lead`], won through the broker by
//! [`election`]). It runs one refresh task per merchant ([`refresh`]); every other process
//! adopts the tokens it announces ([`TokenKeeper::adopt`]) and asks it for a refresh when the
//! platform rejects one. What travels between them is in [`wire`], sealed or stamped
//! ([`stamp`]); the tokens and their generations are in [`store`].

pub mod election;
pub mod leadership;
mod metrics;
mod refresh;
pub mod stamp;
mod store;
pub mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::ids::AppId;
use crate::permits::PermitIssuer;
use crate::settings::{Merchant, Merchants};
use crate::supervise::{Task, Tasks};
use crate::weibo::{Token, TokenError, WeiboClient};

pub use metrics::TokenMetrics;
pub use store::{refresh_due, valid_until, MAX_LIFETIME, MAX_REFRESH_AFTER};

/// Where tokens come from: the platform in production, a script in tests.
pub trait TokenSource: Send + Sync + 'static {
    /// Obtains a new token for `merchant` (invalidating its previous one).
    fn fetch<'a>(&'a self, merchant: &'a Merchant) -> BoxFuture<'a, Result<Token, TokenError>>;
}

impl TokenSource for WeiboClient {
    fn fetch<'a>(&'a self, merchant: &'a Merchant) -> BoxFuture<'a, Result<Token, TokenError>> {
        Box::pin(self.fetch_token(merchant))
    }
}

/// Tuning of the keeper; the defaults suit production.
#[derive(Debug, Clone)]
pub struct KeeperOptions {
    /// First delay after a failed refresh; doubles on each further failure.
    pub retry_min: Duration,
    /// Cap on that delay.
    pub retry_max: Duration,
    /// How long [`TokenKeeper::get`] waits for a usable token before giving up.
    pub wait_timeout: Duration,
}

impl Default for KeeperOptions {
    fn default() -> Self {
        Self {
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// Why no token could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The appid is not a configured merchant.
    #[error("unknown appid {0}")]
    UnknownMerchant(AppId),
    /// No usable token arrived in time (the platform refuses or is unreachable, or no process
    /// leads right now).
    #[error("no usable access_token for {appid} within {waited:?}")]
    Unavailable {
        /// The merchant.
        appid: AppId,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The keeper was shut down.
    #[error("token keeper stopped")]
    Stopped,
}

/// What the keeper asks its process's broker side ([`election`]) to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperEvent {
    /// This process, leading, obtained a token for the merchant: announce it.
    Obtained(AppId),
    /// The platform rejected this generation of the merchant's token: ask the leader for a
    /// new one.
    Rejected {
        /// The merchant.
        appid: AppId,
        /// The rejected token's generation.
        generation: u64,
    },
    /// A caller found no usable token: ask the leader to announce its tokens. Sent once
    /// until the broker side takes it ([`TokenKeeper::wanting_heard`]).
    Wanting,
}

/// Hands out each merchant's current token; cheap to clone, one per process.
#[derive(Clone)]
pub struct TokenKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    store: store::Store,
    merchants: Merchants,
    source: Arc<dyn TokenSource>,
    metrics: TokenMetrics,
    options: KeeperOptions,
    leading: AtomicBool,
    // The keeper queue, while its active consumer is not a relay (see `leadership`).
    foreign_leader: std::sync::Mutex<Option<String>>,
    events: mpsc::UnboundedSender<KeeperEvent>,
    // A `Wanting` sent and not yet taken: callers do not queue one each.
    wanting: AtomicBool,
    // The refresh tasks' group; dropping the last keeper handle stops a lead still running.
    tasks: Tasks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.stop();
    }
}

impl fmt::Debug for TokenKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut appids: Vec<&AppId> = self.inner.store.appids().collect();
        appids.sort();
        f.debug_struct("TokenKeeper")
            .field("merchants", &appids)
            .field("leading", &self.is_leading())
            .finish_non_exhaustive()
    }
}

/// This process leads while it holds this: its refresh tasks run, and the permit issuer it
/// was given. Dropping it stops both at once (a refresh in flight is abandoned);
/// [`stand_down`](Self::stand_down) also waits for the issuer's channel to close.
#[must_use = "the process leads only while this is held"]
pub struct Leading {
    keeper: Weak<Inner>,
    refresh: Tasks,
    permits: Option<PermitIssuer>,
}

impl Leading {
    /// Issues the deployment's call permits too, for as long as this process leads.
    pub fn with_permits(mut self, permits: PermitIssuer) -> Self {
        self.permits = Some(permits);
        self
    }

    /// Stops leading: no refresh from here on, whatever stopping the permits then takes.
    pub async fn stand_down(mut self) {
        self.stop_refreshing();
        if let Some(permits) = self.permits.take() {
            permits.stop().await;
        }
    }

    fn stop_refreshing(&self) {
        self.refresh.stop();
        if let Some(inner) = self.keeper.upgrade() {
            inner.leading.store(false, Ordering::SeqCst);
            inner.metrics.set_leading(false);
        }
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.stop_refreshing();
    }
}

impl TokenKeeper {
    /// A keeper holding no token, leading nothing yet; what it asks of the broker side comes
    /// out of the receiver, and the refresh tasks run in a group of their own under `tasks`.
    pub fn new(
        source: Arc<dyn TokenSource>,
        merchants: &Merchants,
        options: KeeperOptions,
        tasks: &Tasks,
    ) -> (Self, mpsc::UnboundedReceiver<KeeperEvent>) {
        let store = store::Store::new(merchants);
        let watchers = store
            .appids()
            .filter_map(|a| Some((a.clone(), store.slot(a)?.subscribe())))
            .collect();
        let (events, events_rx) = mpsc::unbounded_channel();
        let keeper = Self {
            inner: Arc::new(Inner {
                store,
                merchants: merchants.clone(),
                source,
                metrics: TokenMetrics::new(watchers),
                options,
                leading: AtomicBool::new(false),
                foreign_leader: std::sync::Mutex::new(None),
                events,
                wanting: AtomicBool::new(false),
                tasks: tasks.child(),
            }),
        };
        (keeper, events_rx)
    }

    /// Starts leading: one refresh task per merchant, each keeping a token it already holds
    /// (adopted from the previous leader) until that token is due, and fetching one at once
    /// otherwise.
    pub fn lead(&self) -> Leading {
        let refresh = self.inner.tasks.child();
        self.inner.leading.store(true, Ordering::SeqCst);
        self.inner.metrics.set_leading(true);
        for merchant in self.inner.merchants.iter() {
            let Some(slot) = self.inner.store.slot(merchant.appid()) else {
                continue;
            };
            let refresher = refresh::Refresher {
                merchant: merchant.clone(),
                source: self.inner.source.clone(),
                slot: slot.clone(),
                metrics: self.inner.metrics.clone(),
                options: self.inner.options.clone(),
                events: self.inner.events.clone(),
            };
            refresh.spawn(Task::Refresh, move |stop| refresher.clone().run(stop));
        }
        Leading {
            keeper: Arc::downgrade(&self.inner),
            refresh,
            permits: None,
        }
    }

    /// True while this process leads.
    pub fn is_leading(&self) -> bool {
        self.inner.leading.load(Ordering::SeqCst)
    }

    /// The merchant's current token, waiting (up to `wait_timeout`) while none is usable.
    pub async fn get(&self, appid: &AppId) -> Result<Arc<Token>, KeeperError> {
        let mut rx = self.slot(appid)?.subscribe();
        if rx.borrow().usable(Instant::now()).is_none()
            && !self.is_leading()
            && !self.inner.wanting.swap(true, Ordering::SeqCst)
        {
            // A process that joined late or missed an announcement asks the leader.
            let _ = self.inner.events.send(KeeperEvent::Wanting);
        }
        let wait = async {
            loop {
                if let Some(token) = rx.borrow_and_update().usable(Instant::now()) {
                    return Ok(token);
                }
                rx.changed().await.map_err(|_| KeeperError::Stopped)?;
            }
        };
        let waited = self.inner.options.wait_timeout;
        timeout(waited, wait).await.unwrap_or_else(|_| {
            Err(KeeperError::Unavailable {
                appid: appid.clone(),
                waited,
            })
        })
    }

    /// The broker side took the last [`KeeperEvent::Wanting`]: the next caller without a
    /// token may send one again.
    pub fn wanting_heard(&self) {
        self.inner.wanting.store(false, Ordering::SeqCst);
    }

    /// Reports that the platform rejected `stale` (a token code). If it is still the current
    /// token, it is no longer handed out, and it is replaced: by this process's refresh task
    /// when it leads, else by the leader, asked through the broker. Reports about a token
    /// already replaced, and further reports about the same one, change nothing.
    pub fn invalidate(&self, appid: &AppId, stale: &Token) -> Result<(), KeeperError> {
        self.slot(appid)?;
        if let Some(generation) = self.inner.store.reject(appid, stale) {
            tracing::info!(
                %appid,
                generation,
                "access_token rejected by the platform: refreshing"
            );
            if !self.is_leading() {
                let appid = appid.clone();
                let _ = (self.inner.events).send(KeeperEvent::Rejected { appid, generation });
            }
        }
        Ok(())
    }

    /// A leader's handling of another process's report: replaces the token when `generation`
    /// is still the current one (true), else nothing.
    pub fn invalidate_generation(&self, appid: &AppId, generation: u64) -> bool {
        self.inner.store.reject_generation(appid, generation)
    }

    /// Takes a token announced by the leader, unless one as new or newer is already held.
    pub fn adopt(&self, appid: &AppId, token: Token, generation: u64) -> bool {
        self.inner.store.adopt(appid, token, generation)
    }

    /// The merchant's current token and its generation, rejected or not (to announce it).
    pub fn current(&self, appid: &AppId) -> Option<(Arc<Token>, u64)> {
        self.inner.store.current(appid)
    }

    /// The configured merchants.
    pub fn merchants(&self) -> &Merchants {
        &self.inner.merchants
    }

    /// True when every merchant holds an unexpired token. A rejected token being replaced
    /// still counts, so readiness does not flap on each compensation.
    pub fn is_ready(&self) -> bool {
        self.inner.store.all_held()
    }

    /// The keeper's metrics, to register in the process registry.
    pub fn metrics(&self) -> &TokenMetrics {
        &self.inner.metrics
    }

    fn slot(
        &self,
        appid: &AppId,
    ) -> Result<&tokio::sync::watch::Sender<store::SlotState>, KeeperError> {
        self.inner
            .store
            .slot(appid)
            .ok_or_else(|| KeeperError::UnknownMerchant(appid.clone()))
    }
}
