//! One refresh per merchant at a time across the whole deployment (Nango's lessons, in
//! PostgreSQL):
//!
//! - A merchant is refreshed at 60-75 % of its access token's life (the spread keeps merchants
//!   onboarded together from coming due together), at least daily, whether or not anything
//!   calls with it; a sweep paces the refreshes it starts, so a herd due at once is spread.
//! - The refresh runs holding the merchant's row lock (`SELECT .. FOR UPDATE`). A process that
//!   waited for the lock re-reads the row and finds the work done (the due time moved, or the
//!   generation it saw refused is gone), so it reads the result instead of refreshing again:
//!   one refresh token is presented once.
//! - The new tokens are committed before the new access token is returned to anyone. What a
//!   crash between the platform's answer and that commit loses is that answer: the old refresh
//!   token, still in the row, is dead at the platform, so the next refresh is refused and the
//!   merchant needs authorizing again. The window is one `UPDATE` and `COMMIT` on an open
//!   transaction ([`RefreshOutcome::Refreshed::store_window`] measures it).
//! - `invalid_grant` (or the refresh token's expiry passed) makes the merchant
//!   `needs_reauthorization` with one outbox event: the status check under the lock makes
//!   every later attempt a no-op. Other failures back off (30 s doubling to 30 min, jittered).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::crypto::{Column, KeyRing};
use super::domain::{MerchantRef, MerchantStatus, Uid};
use super::oauth::{Grant, OAuthClient};
use super::store::outbox::{self, Ending};
use super::store::{merchants, MerchantRow, NewTokens, Store, StoreError};
use crate::clock::Later;

mod policy;
mod withdrawn;

pub use policy::RefreshPolicy;

/// Seals a grant for `merchant` and schedules its next refresh.
pub fn seal_grant(
    keys: &KeyRing,
    policy: &RefreshPolicy,
    merchant: &MerchantRef,
    grant: &Grant,
    obtained_at: SystemTime,
) -> NewTokens {
    NewTokens {
        access: keys.seal(merchant, Column::AccessToken, &grant.access_token),
        refresh: keys.seal(merchant, Column::RefreshToken, &grant.refresh_token),
        access_expires_at: obtained_at.later(grant.expires_in),
        refresh_expires_at: obtained_at.later(grant.refresh_expires_in),
        obtained_at,
        next_refresh_at: policy.next_due(obtained_at, grant),
    }
}

/// Why a refresh is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The schedule: skipped when another process already moved it.
    Due,
    /// A call was refused with the token of this generation: skipped when it is gone.
    Rejected {
        /// The generation the refused call used.
        generation: i64,
    },
}

/// An access token to call with, and the generation to name if it is refused.
#[derive(Debug, Clone)]
pub struct CurrentToken {
    /// The token (Debug redacts it).
    pub access_token: SecretString,
    /// Its generation.
    pub generation: i64,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
}

/// What one refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// New tokens stored.
    Refreshed {
        /// The new generation.
        generation: i64,
        /// From the platform's answer to the commit of its tokens: what a crash could lose.
        store_window: Duration,
    },
    /// Another process refreshed first (or nothing is due): nothing presented.
    AlreadyDone,
    /// Not authorized (any more): nothing presented.
    NotAuthorized,
    /// Now `needs_reauthorization` (one event written).
    NeedsReauthorization,
    /// Now `revoked`: a refused call's token and refresh token were both dead and
    /// `get_token_info` confirmed the authorization withdrawn (one event written).
    Revoked,
    /// Failed; tried again at the time noted.
    Failed(String),
}

/// Why a refresh could not even be tried.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The store failed (nothing changed: the transaction rolled back).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such merchant.
    #[error("no merchant {0}")]
    Unknown(MerchantRef),
}

/// Counts of one sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Merchants refreshed.
    pub refreshed: u64,
    /// Found done by another process, or no longer authorized.
    pub skipped: u64,
    /// Failed (backing off).
    pub failed: u64,
    /// Now needs_reauthorization.
    pub needs_reauthorization: u64,
    /// Store errors.
    pub errors: u64,
}

/// Refreshes merchants of one store. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    store: Store,
    client: Arc<dyn OAuthClient>,
    keys: KeyRing,
    policy: Arc<RefreshPolicy>,
}

impl Refresher {
    /// A refresher over `store`, presenting refresh tokens through `client`.
    pub fn new(
        store: Store,
        client: Arc<dyn OAuthClient>,
        keys: KeyRing,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            store,
            client,
            keys,
            policy: Arc::new(policy),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The merchant bound to `uid` (whatever its status), for commands that name it so.
    pub async fn merchant_of(&self, uid: &Uid) -> Result<Option<MerchantRef>, StoreError> {
        Ok(self
            .store
            .merchant_by_uid(uid)
            .await?
            .map(|row| row.merchant_ref))
    }

    /// The merchant's current access token, opened (only an authorized merchant has one).
    pub async fn access_token(
        &self,
        merchant: &MerchantRef,
    ) -> Result<Option<CurrentToken>, RefreshError> {
        let Some(row) = self.store.merchant(merchant).await? else {
            return Err(RefreshError::Unknown(merchant.clone()));
        };
        let Some(sealed) = row
            .access
            .as_ref()
            .filter(|_| row.status == MerchantStatus::Authorized)
        else {
            return Ok(None);
        };
        match self.keys.open(merchant, Column::AccessToken, sealed) {
            Ok(access_token) => Ok(Some(CurrentToken {
                access_token,
                generation: row.generation,
                expires_at: row.access_expires_at,
            })),
            Err(e) => {
                tracing::error!(%merchant, error = %e, "access token does not open");
                Ok(None)
            }
        }
    }

    /// Refreshes `merchant` unless another process did (see the module's rules).
    #[tracing::instrument(skip(self), fields(merchant = %merchant))]
    pub async fn refresh(
        &self,
        merchant: &MerchantRef,
        why: Why,
        now: SystemTime,
    ) -> Result<RefreshOutcome, RefreshError> {
        let mut tx = self.store.begin().await?;
        // A process stuck holding the lock (frozen, partitioned) is ended by the server, so the
        // merchant is not wedged; waiting for a live one is bounded too.
        let wait_ms = self.policy.lock_wait.as_millis().min(i32::MAX as u128);
        sqlx::query(&format!("SET LOCAL lock_timeout = {wait_ms}"))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        sqlx::query(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}",
            wait_ms.saturating_mul(2)
        ))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(row) = merchants::lock(&mut tx, merchant).await? else {
            return Err(RefreshError::Unknown(merchant.clone()));
        };
        if row.status != MerchantStatus::Authorized {
            return Ok(RefreshOutcome::NotAuthorized);
        }
        let done = match why {
            Why::Due => row.next_refresh_at.is_some_and(|due| due > now),
            Why::Rejected { generation } => row.generation != generation,
        };
        if done {
            return Ok(RefreshOutcome::AlreadyDone);
        }
        if row.refresh_expires_at.is_some_and(|at| at <= now) {
            self.needs_reauthorization(&mut tx, &row, "refresh_token_expired", now)
                .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(RefreshOutcome::NeedsReauthorization);
        }
        let opened = row
            .refresh
            .as_ref()
            .map(|sealed| self.keys.open(merchant, Column::RefreshToken, sealed));
        let refresh_token = match opened {
            Some(Ok(token)) => token,
            Some(Err(e)) => return self.fail(tx, &row, &e.to_string(), now).await,
            None => return self.fail(tx, &row, "no refresh token", now).await,
        };
        let obtained_at = SystemTime::now();
        match self.client.refresh(&refresh_token).await {
            Ok(grant) if Some(&grant.uid) != row.uid.as_ref() => {
                self.needs_reauthorization(&mut tx, &row, "uid_changed", now)
                    .await?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(RefreshOutcome::NeedsReauthorization)
            }
            Ok(grant) => {
                let answered = Instant::now();
                let tokens = seal_grant(&self.keys, &self.policy, merchant, &grant, obtained_at);
                let uid = grant.uid.clone();
                let generation = merchants::store_tokens(&mut tx, merchant, &uid, &tokens).await?;
                tx.commit().await.map_err(StoreError::from)?;
                let store_window = answered.elapsed();
                tracing::info!(generation, ?store_window, "refreshed");
                Ok(RefreshOutcome::Refreshed {
                    generation,
                    store_window,
                })
            }
            // Only after a refused call: a due refresh keeps invalid_grant's one meaning.
            Err(e)
                if e.is_invalid_grant()
                    && matches!(why, Why::Rejected { .. })
                    && self.withdrawn(&row, now).await =>
            {
                outbox::end_authorization(
                    &mut tx,
                    &row,
                    Ending::Revoked,
                    "authorization_withdrawn",
                    now,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                tracing::warn!(error = %e, "authorization withdrawn at the platform: revoked");
                Ok(RefreshOutcome::Revoked)
            }
            Err(e) if e.is_invalid_grant() => {
                self.needs_reauthorization(&mut tx, &row, "invalid_grant", now)
                    .await?;
                tx.commit().await.map_err(StoreError::from)?;
                tracing::warn!(error = %e, "refresh token refused: needs reauthorization");
                Ok(RefreshOutcome::NeedsReauthorization)
            }
            Err(e) => self.fail(tx, &row, &e.to_string(), now).await,
        }
    }

    async fn needs_reauthorization(
        &self,
        tx: &mut super::store::Tx,
        row: &MerchantRow,
        reason: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        outbox::end_authorization(tx, row, Ending::NeedsReauthorization, reason, now).await
    }

    async fn fail(
        &self,
        mut tx: super::store::Tx,
        row: &MerchantRow,
        error: &str,
        now: SystemTime,
    ) -> Result<RefreshOutcome, RefreshError> {
        let retry_at = now.later(self.policy.cooldown(row.refresh_failures));
        let error = crate::telemetry::clip(error, 300);
        merchants::record_failure(&mut tx, &row.merchant_ref, &error, retry_at).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::warn!(merchant = %row.merchant_ref, %error, "refresh failed; backing off");
        Ok(RefreshOutcome::Failed(error))
    }

    /// Refreshes the merchants due at `now` (at most `batch`), `concurrency` at a time, started
    /// no faster than `per_second`.
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self, now: SystemTime) -> Result<SweepReport, StoreError> {
        let due = merchants::due(&self.store, now, self.policy.batch).await?;
        let gap = Duration::from_secs(1)
            .checked_div(self.policy.per_second.max(1))
            .unwrap_or_default();
        // One shared pace: after a stall the starts resume at the pace instead of catching up
        // in a burst.
        let pace = tokio::sync::Mutex::new({
            let mut pace = tokio::time::interval(gap.max(Duration::from_micros(1)));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pace
        });
        let outcomes: Vec<_> = stream::iter(due)
            .map(|merchant| {
                let pace = &pace;
                async move {
                    pace.lock().await.tick().await;
                    self.refresh(&merchant, Why::Due, now).await
                }
            })
            .buffer_unordered(self.policy.concurrency.max(1))
            .collect()
            .await;
        let mut report = SweepReport::default();
        for outcome in outcomes {
            match outcome {
                Ok(RefreshOutcome::Refreshed { .. }) => report.refreshed += 1,
                // Revoked follows a refused call only, never a due refresh.
                Ok(
                    RefreshOutcome::AlreadyDone
                    | RefreshOutcome::NotAuthorized
                    | RefreshOutcome::Revoked,
                ) => report.skipped += 1,
                Ok(RefreshOutcome::Failed(_)) => report.failed += 1,
                Ok(RefreshOutcome::NeedsReauthorization) => report.needs_reauthorization += 1,
                Err(e) => {
                    tracing::error!(error = %e, "refresh not tried");
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// Sweeps every `tick` until `shutdown`; a sweep in progress finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.sweep(SystemTime::now()).await {
                tracing::error!(error = %e, "refresh sweep failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.policy.tick) => {}
            }
        }
    }
}
