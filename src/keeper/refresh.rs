//! One merchant's refresh task, running while its process leads: the only code that asks the
//! platform for that merchant's tokens.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::store::{self, refresh_due, SlotState};
use super::{KeeperEvent, KeeperOptions, TokenMetrics, TokenSource};
use crate::settings::Merchant;
use crate::weibo::Token;

#[derive(Clone)]
pub(super) struct Refresher {
    pub(super) merchant: Merchant,
    pub(super) source: Arc<dyn TokenSource>,
    pub(super) slot: watch::Sender<SlotState>,
    pub(super) metrics: TokenMetrics,
    pub(super) options: KeeperOptions,
    pub(super) events: mpsc::UnboundedSender<KeeperEvent>,
}

impl Refresher {
    /// Keeps the merchant's slot holding a token until `stop` (the process stops leading).
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut rx = self.slot.subscribe();
        let mut due_passed = false;
        loop {
            // A token held and not rejected (obtained by an earlier leader, or by this one)
            // is kept until it is due: a new one would kill it for every other process. The
            // old token stays in use while its replacement is requested.
            let held = {
                let slot = rx.borrow_and_update();
                match &slot.token {
                    Some(token) if slot.held() && !due_passed => {
                        Some((refresh_due(token), slot.generation))
                    }
                    _ => None,
                }
            };
            due_passed = false;
            let (due, generation) = match held {
                Some(held) => held,
                None => {
                    let Some(token) = self.obtain(&stop).await else {
                        return;
                    };
                    let due = refresh_due(&token);
                    (due, self.install(token))
                }
            };
            // Sleep until the token is due, or until a caller reports it rejected.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sleep_until(due) => {
                        due_passed = true;
                        break;
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let slot = rx.borrow_and_update();
                        if slot.invalidated >= slot.generation || slot.generation != generation {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Puts a new token in the slot with a generation above every earlier one, and says so.
    fn install(&self, token: Token) -> u64 {
        let generation = store::install(&self.slot, token);
        let _ = (self.events).send(KeeperEvent::Obtained(self.merchant.appid().clone()));
        generation
    }

    /// Asks until a token comes, backing off; the old token stays in use meanwhile.
    /// `None` when leading stops.
    #[tracing::instrument(skip_all, fields(appid = %self.merchant.appid()))]
    async fn obtain(&self, stop: &CancellationToken) -> Option<Token> {
        let appid = self.merchant.appid();
        let mut delay = self.options.retry_min;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return None,
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
                        _ = stop.cancelled() => return None,
                        _ = sleep(delay) => {}
                    }
                    delay = delay.saturating_mul(2).min(self.options.retry_max);
                }
            }
        }
    }
}
