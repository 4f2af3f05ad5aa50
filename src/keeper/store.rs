//! The slots: each merchant's current token and its generation. A generation is unique and
//! increasing across the deployment, so many rejections of one token, in any number of
//! processes, cause one refresh; `invalidated` is the highest generation reported rejected,
//! so a token is usable only while `generation > invalidated`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::ids::AppId;
use crate::settings::Merchants;
use crate::weibo::Token;

/// The platform's stated life of a token; a longer `expires_in` is not trusted.
pub const MAX_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// A token is replaced at the latest this long after it was obtained (1.5 h).
pub const MAX_REFRESH_AFTER: Duration = Duration::from_secs(90 * 60);

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

/// What one merchant's slot holds.
#[derive(Default)]
pub(crate) struct SlotState {
    pub(super) token: Option<Arc<Token>>,
    pub(super) generation: u64,
    pub(super) invalidated: u64,
}

impl SlotState {
    /// The token, while it is neither rejected nor expired at `now`.
    pub(super) fn usable(&self, now: Instant) -> Option<Arc<Token>> {
        let token = self.token.as_ref()?;
        (self.generation > self.invalidated && now < valid_until(token)).then(|| token.clone())
    }

    /// True while the slot holds a token that is not rejected.
    pub(super) fn held(&self) -> bool {
        self.token.is_some() && self.generation > self.invalidated
    }
}

/// Every merchant's slot; a slot's watchers (callers waiting, the refresh task, the age gauge)
/// see each change.
pub(super) struct Store {
    slots: HashMap<AppId, watch::Sender<SlotState>>,
}

impl Store {
    /// An empty slot for each merchant.
    pub(super) fn new(merchants: &Merchants) -> Self {
        let slots = merchants
            .iter()
            .map(|m| (m.appid().clone(), watch::Sender::new(SlotState::default())))
            .collect();
        Self { slots }
    }

    /// The merchants, in no order.
    pub(super) fn appids(&self) -> impl Iterator<Item = &AppId> {
        self.slots.keys()
    }

    /// The merchant's slot, if it is a configured merchant.
    pub(super) fn slot(&self, appid: &AppId) -> Option<&watch::Sender<SlotState>> {
        self.slots.get(appid)
    }

    /// Marks `stale` rejected when it is still the current token; the generation it had, or
    /// `None` when it was already replaced or reported.
    pub(super) fn reject(&self, appid: &AppId, stale: &Token) -> Option<u64> {
        let mut rejected = None;
        self.slot(appid)?.send_if_modified(|s| match &s.token {
            Some(current) if current.same_token(stale) && s.invalidated < s.generation => {
                s.invalidated = s.generation;
                rejected = Some(s.generation);
                true
            }
            _ => false,
        });
        rejected
    }

    /// Marks `generation` rejected when it is still the current one (true), else nothing.
    pub(super) fn reject_generation(&self, appid: &AppId, generation: u64) -> bool {
        self.slot(appid).is_some_and(|slot| {
            slot.send_if_modified(|s| {
                let current = s.generation == generation && s.invalidated < generation;
                if current {
                    s.invalidated = generation;
                }
                current
            })
        })
    }

    /// Takes a token announced by the leader, unless one as new or newer is already held.
    pub(super) fn adopt(&self, appid: &AppId, token: Token, generation: u64) -> bool {
        self.slot(appid).is_some_and(|slot| {
            slot.send_if_modified(|s| {
                let newer = generation > s.generation;
                if newer {
                    s.token = Some(Arc::new(token));
                    s.generation = generation;
                }
                newer
            })
        })
    }

    /// The merchant's current token and its generation, rejected or not.
    pub(super) fn current(&self, appid: &AppId) -> Option<(Arc<Token>, u64)> {
        let slot = self.slot(appid)?.borrow();
        Some((slot.token.clone()?, slot.generation))
    }

    /// True when every merchant holds an unexpired token. A rejected token being replaced
    /// still counts, so readiness does not flap on each compensation.
    pub(super) fn all_held(&self) -> bool {
        let now = Instant::now();
        self.slots.values().all(|tx| {
            tx.borrow()
                .token
                .as_ref()
                .is_some_and(|t| now < valid_until(t))
        })
    }
}

/// Puts a new token in `slot` with a generation above every earlier one; returns it.
pub(super) fn install(slot: &watch::Sender<SlotState>, token: Token) -> u64 {
    let mut generation = 0;
    slot.send_modify(|s| {
        // Milliseconds since the epoch: increasing across leaders too, as long as their
        // clocks are within the time between two refreshes of each other.
        generation = crate::clock::unix_millis().max(s.generation + 1);
        s.generation = generation;
        s.token = Some(Arc::new(token));
    });
    generation
}
