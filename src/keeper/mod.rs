//! The token keeper (platform spec section 3): each process's holder of one access_token per
//! merchant. Issuing a token invalidates the previous one, so only one process of a deployment
//! ever asks for tokens: the one that leads ([`TokenKeeper::lead`], won through the broker by
//! [`cluster`]). It runs one refresh task per merchant; every other process adopts the tokens it
//! announces ([`TokenKeeper::adopt`]) and asks it for a refresh when the platform rejects one.
//!
//! Tokens carry a generation, unique and increasing across the deployment, so many rejections
//! of one token, in any number of processes, cause one refresh.

pub mod cluster;
pub mod leadership;
mod metrics;
mod refresh;
pub mod sealed;
pub mod stamp;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{timeout, Instant};

use crate::ids::AppId;
use crate::settings::{Merchant, Merchants};
use crate::supervise::{Task, TaskMetrics, Tasks};
use crate::weibo::{Token, TokenError, WeiboClient};

pub use metrics::TokenMetrics;

/// The platform's stated life of a token; a longer `expires_in` is not trusted.
pub const MAX_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// A token is replaced at the latest this long after it was obtained (1.5 h).
pub const MAX_REFRESH_AFTER: Duration = Duration::from_secs(90 * 60);

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

/// When the keeper replaces `token`: at 75 % of its life, never later than 1.5 h.
pub fn refresh_due(token: &Token) -> Instant {
    let life = token.expires_in().min(MAX_LIFETIME);
    let after = life
        .checked_div(4)
        .unwrap_or_default()
        .saturating_mul(3)
        .min(MAX_REFRESH_AFTER);
    crate::clock::Later::later(token.obtained_at(), after)
}

/// When `token` stops being usable, by the local clock.
pub fn valid_until(token: &Token) -> Instant {
    crate::clock::Later::later(token.obtained_at(), token.expires_in().min(MAX_LIFETIME))
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

/// What one merchant's slot holds. `generation` identifies the token held; `invalidated` is
/// the highest generation reported rejected, so a token is usable only while
/// `generation > invalidated`.
#[derive(Default)]
pub(crate) struct SlotState {
    token: Option<Arc<Token>>,
    generation: u64,
    invalidated: u64,
}

impl SlotState {
    fn usable(&self, now: Instant) -> Option<Arc<Token>> {
        let token = self.token.as_ref()?;
        (self.generation > self.invalidated && now < valid_until(token)).then(|| token.clone())
    }
}

/// What the keeper tells the broker side ([`cluster`]) of its process.
pub struct KeeperEvents {
    /// The appid of every token this process obtained while leading, to announce.
    pub obtained: mpsc::UnboundedReceiver<AppId>,
    /// Rejected tokens to report to the leader: (appid, generation).
    pub rejected: mpsc::UnboundedReceiver<(AppId, u64)>,
    /// Signalled when a caller found no usable token (ask the leader to announce its tokens).
    pub wanting: Arc<Notify>,
}

/// Hands out each merchant's current token; cheap to clone, one per process.
#[derive(Clone)]
pub struct TokenKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    slots: HashMap<AppId, watch::Sender<SlotState>>,
    merchants: Merchants,
    source: Arc<dyn TokenSource>,
    metrics: TokenMetrics,
    options: KeeperOptions,
    leading: AtomicBool,
    // The keeper queue, while its active consumer is not a relay (see `leadership`).
    foreign_leader: std::sync::Mutex<Option<String>>,
    obtained: mpsc::UnboundedSender<AppId>,
    rejected: mpsc::UnboundedSender<(AppId, u64)>,
    wanting: Arc<Notify>,
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
        let mut appids: Vec<&AppId> = self.inner.slots.keys().collect();
        appids.sort();
        f.debug_struct("TokenKeeper")
            .field("merchants", &appids)
            .field("leading", &self.is_leading())
            .finish_non_exhaustive()
    }
}

/// This process leads while it holds this: its refresh tasks run. Dropping it stops them at
/// once (a refresh in flight is abandoned).
pub struct Lead {
    keeper: Weak<Inner>,
    refresh: Tasks,
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.refresh.stop();
        if let Some(inner) = self.keeper.upgrade() {
            inner.leading.store(false, Ordering::SeqCst);
            inner.metrics.set_leading(false);
        }
    }
}

impl TokenKeeper {
    /// A keeper holding no token, leading nothing yet; the events go to the broker side,
    /// and the refresh tasks run in a group of their own under `tasks`.
    pub fn new(
        source: Arc<dyn TokenSource>,
        merchants: &Merchants,
        options: KeeperOptions,
        tasks: &Tasks,
    ) -> (Self, KeeperEvents) {
        let mut slots = HashMap::new();
        let mut receivers = Vec::new();
        for merchant in merchants.iter() {
            let (tx, rx) = watch::channel(SlotState::default());
            receivers.push((merchant.appid().clone(), rx));
            slots.insert(merchant.appid().clone(), tx);
        }
        let (obtained, obtained_rx) = mpsc::unbounded_channel();
        let (rejected, rejected_rx) = mpsc::unbounded_channel();
        let wanting = Arc::new(Notify::new());
        let keeper = Self {
            inner: Arc::new(Inner {
                slots,
                merchants: merchants.clone(),
                source,
                metrics: TokenMetrics::new(receivers),
                options,
                leading: AtomicBool::new(false),
                foreign_leader: std::sync::Mutex::new(None),
                obtained,
                rejected,
                wanting: wanting.clone(),
                tasks: tasks.child(),
            }),
        };
        let events = KeeperEvents {
            obtained: obtained_rx,
            rejected: rejected_rx,
            wanting,
        };
        (keeper, events)
    }

    /// A keeper that leads for as long as it lives: for a process that is alone by
    /// construction (tests, tools). Each merchant's first token is requested at once.
    pub fn start(
        source: Arc<dyn TokenSource>,
        merchants: &Merchants,
        options: KeeperOptions,
    ) -> Self {
        let tasks = Tasks::new(TaskMetrics::unregistered());
        let (keeper, _events) = Self::new(source, merchants, options, &tasks);
        // Leads until the last handle is dropped, which stops the refresh tasks.
        std::mem::forget(keeper.lead());
        keeper
    }

    /// Starts leading: one refresh task per merchant, each keeping a token it already holds
    /// (adopted from the previous leader) until that token is due, and fetching one at once
    /// otherwise.
    pub fn lead(&self) -> Lead {
        let refresh = self.inner.tasks.child();
        self.inner.leading.store(true, Ordering::SeqCst);
        self.inner.metrics.set_leading(true);
        for merchant in self.inner.merchants.iter() {
            let refresher = refresh::Refresher {
                merchant: merchant.clone(),
                source: self.inner.source.clone(),
                tx: self.inner.slots[merchant.appid()].clone(),
                metrics: self.inner.metrics.clone(),
                options: self.inner.options.clone(),
                obtained: self.inner.obtained.clone(),
            };
            refresh.spawn(Task::Refresh, move |stop| refresher.clone().run(stop));
        }
        Lead {
            keeper: Arc::downgrade(&self.inner),
            refresh,
        }
    }

    /// True while this process leads.
    pub fn is_leading(&self) -> bool {
        self.inner.leading.load(Ordering::SeqCst)
    }

    /// The merchant's current token, waiting (up to `wait_timeout`) while none is usable.
    pub async fn get(&self, appid: &AppId) -> Result<Arc<Token>, KeeperError> {
        let mut rx = self.slot(appid)?.subscribe();
        if rx.borrow().usable(Instant::now()).is_none() && !self.is_leading() {
            // A process that joined late or missed an announcement asks the leader.
            self.inner.wanting.notify_one();
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

    /// Reports that the platform rejected `stale` (a token code). If it is still the current
    /// token, it is no longer handed out, and it is replaced: by this process's refresh task
    /// when it leads, else by the leader, asked through the broker. Reports about a token
    /// already replaced, and further reports about the same one, change nothing.
    pub fn invalidate(&self, appid: &AppId, stale: &Token) -> Result<(), KeeperError> {
        let mut rejected = None;
        self.slot(appid)?.send_if_modified(|s| match &s.token {
            Some(current) if current.same_token(stale) && s.invalidated < s.generation => {
                s.invalidated = s.generation;
                rejected = Some(s.generation);
                true
            }
            _ => false,
        });
        if let Some(generation) = rejected {
            tracing::info!(
                %appid,
                generation,
                "access_token rejected by the platform: refreshing"
            );
            if !self.is_leading() {
                let _ = self.inner.rejected.send((appid.clone(), generation));
            }
        }
        Ok(())
    }

    /// A leader's handling of another process's report: replaces the token when `generation`
    /// is still the current one (true), else nothing.
    pub fn invalidate_generation(&self, appid: &AppId, generation: u64) -> bool {
        let Ok(slot) = self.slot(appid) else {
            return false;
        };
        slot.send_if_modified(|s| {
            if s.generation == generation && s.invalidated < generation {
                s.invalidated = generation;
                true
            } else {
                false
            }
        })
    }

    /// Takes a token announced by the leader, unless one as new or newer is already held.
    pub fn adopt(&self, appid: &AppId, token: Token, generation: u64) -> bool {
        let Ok(slot) = self.slot(appid) else {
            return false;
        };
        slot.send_if_modified(|s| {
            if generation > s.generation {
                s.token = Some(Arc::new(token));
                s.generation = generation;
                true
            } else {
                false
            }
        })
    }

    /// The merchant's current token and its generation, rejected or not (to announce it).
    pub fn current(&self, appid: &AppId) -> Option<(Arc<Token>, u64)> {
        let slot = self.slot(appid).ok()?.borrow();
        Some((slot.token.clone()?, slot.generation))
    }

    /// The configured merchants.
    pub fn merchants(&self) -> &Merchants {
        &self.inner.merchants
    }

    /// True when every merchant holds an unexpired token. A rejected token being replaced
    /// still counts, so readiness does not flap on each compensation.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        self.inner.slots.values().all(|tx| {
            tx.borrow()
                .token
                .as_ref()
                .is_some_and(|t| now < valid_until(t))
        })
    }

    /// The keeper's metrics, to register in the process registry.
    pub fn metrics(&self) -> &TokenMetrics {
        &self.inner.metrics
    }

    fn slot(&self, appid: &AppId) -> Result<&watch::Sender<SlotState>, KeeperError> {
        self.inner
            .slots
            .get(appid)
            .ok_or_else(|| KeeperError::UnknownMerchant(appid.clone()))
    }
}

#[cfg(test)]
mod tests;
