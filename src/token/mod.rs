//! The token keeper (platform spec section 3): one process-wide holder of one access_token per
//! merchant. Issuing a token invalidates the previous one, so only the keeper's own task per
//! merchant ever asks for one; every caller shares what it holds.

mod metrics;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::{Merchant, Merchants};
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
    token.obtained_at() + (life * 3 / 4).min(MAX_REFRESH_AFTER)
}

/// When `token` stops being usable, by the local clock.
pub fn valid_until(token: &Token) -> Instant {
    token.obtained_at() + token.expires_in().min(MAX_LIFETIME)
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
    UnknownMerchant(String),
    /// No usable token arrived in time (the platform refuses or is unreachable).
    #[error("no usable access_token for {appid} within {waited:?}")]
    Unavailable {
        /// The merchant.
        appid: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The keeper was shut down.
    #[error("token keeper stopped")]
    Stopped,
}

/// What one merchant's slot holds. `generation` counts tokens obtained; `invalidated` is the
/// highest generation a caller reported rejected, so a token is usable only while
/// `generation > invalidated`.
#[derive(Default)]
struct SlotState {
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

/// Hands out each merchant's current token; cheap to clone, one per process.
#[derive(Clone)]
pub struct TokenKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    slots: HashMap<String, watch::Sender<SlotState>>,
    metrics: TokenMetrics,
    options: KeeperOptions,
    // Dropping the last keeper handle stops the refresh tasks.
    _stop: DropGuard,
}

impl fmt::Debug for TokenKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut appids: Vec<&String> = self.inner.slots.keys().collect();
        appids.sort();
        f.debug_struct("TokenKeeper")
            .field("merchants", &appids)
            .finish_non_exhaustive()
    }
}

impl TokenKeeper {
    /// Starts one refresh task per merchant (on the current tokio runtime); each obtains its
    /// first token at once.
    pub fn start(
        source: Arc<dyn TokenSource>,
        merchants: &Merchants,
        options: KeeperOptions,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut slots = HashMap::new();
        let mut receivers = Vec::new();
        for merchant in merchants.iter() {
            let (tx, rx) = watch::channel(SlotState::default());
            receivers.push((merchant.appid.clone(), rx));
            slots.insert(merchant.appid.clone(), tx);
        }
        let metrics = TokenMetrics::new(receivers);
        for merchant in merchants.iter() {
            let refresher = Refresher {
                merchant: merchant.clone(),
                source: source.clone(),
                tx: slots[&merchant.appid].clone(),
                metrics: metrics.clone(),
                options: options.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(refresher.run());
        }
        Self {
            inner: Arc::new(Inner {
                slots,
                metrics,
                options,
                _stop: stop.drop_guard(),
            }),
        }
    }

    /// The merchant's current token, waiting (up to `wait_timeout`) while none is usable.
    pub async fn get(&self, appid: &str) -> Result<Arc<Token>, KeeperError> {
        let mut rx = self.slot(appid)?.subscribe();
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
                appid: appid.to_owned(),
                waited,
            })
        })
    }

    /// Reports that the platform rejected `stale` (21327/21332). If it is still the current
    /// token, the merchant's task refreshes once; reports about a token already replaced, and
    /// further reports about the same one, change nothing. The next [`get`](Self::get) waits
    /// for the new token.
    pub fn invalidate(&self, appid: &str, stale: &Token) -> Result<(), KeeperError> {
        let reported = self.slot(appid)?.send_if_modified(|s| match &s.token {
            Some(current) if current.same_token(stale) && s.invalidated < s.generation => {
                s.invalidated = s.generation;
                true
            }
            _ => false,
        });
        if reported {
            tracing::info!(appid, "access_token rejected by the platform: refreshing");
        }
        Ok(())
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

    fn slot(&self, appid: &str) -> Result<&watch::Sender<SlotState>, KeeperError> {
        self.inner
            .slots
            .get(appid)
            .ok_or_else(|| KeeperError::UnknownMerchant(appid.to_owned()))
    }
}

/// One merchant's refresh task: the only code that asks for that merchant's tokens.
struct Refresher {
    merchant: Merchant,
    source: Arc<dyn TokenSource>,
    tx: watch::Sender<SlotState>,
    metrics: TokenMetrics,
    options: KeeperOptions,
    stop: CancellationToken,
}

impl Refresher {
    async fn run(self) {
        let mut rx = self.tx.subscribe();
        loop {
            let Some(token) = self.obtain().await else {
                return;
            };
            let due = refresh_due(&token);
            let mut generation = 0;
            self.tx.send_modify(|s| {
                s.generation += 1;
                s.token = Some(Arc::new(token));
                generation = s.generation;
            });
            rx.borrow_and_update();
            // Sleep until the token is due, or until a caller reports it rejected.
            loop {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = sleep_until(due) => break,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if rx.borrow_and_update().invalidated >= generation {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Asks until a token comes, backing off; the old token stays in use meanwhile.
    /// `None` when the keeper stops.
    #[tracing::instrument(skip_all, fields(appid = %self.merchant.appid))]
    async fn obtain(&self) -> Option<Token> {
        let appid = self.merchant.appid.as_str();
        let mut delay = self.options.retry_min;
        loop {
            let result = tokio::select! {
                _ = self.stop.cancelled() => return None,
                result = self.source.fetch(&self.merchant) => result,
            };
            match result {
                Ok(token) => {
                    self.metrics.refreshed(appid);
                    tracing::info!(expires_in = ?token.expires_in(), "access_token obtained");
                    return Some(token);
                }
                Err(error) => {
                    self.metrics.refresh_failed(appid);
                    tracing::warn!(%error, retry_in = ?delay, "access_token refresh failed");
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.options.retry_max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
