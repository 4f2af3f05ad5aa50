//! Ending an authorization: Weibo's cancel callback (unsigned, so only a hint, confirmed with
//! `get_token_info` before anything changes) and the provider's own `merchants revoke`.

use std::time::SystemTime;

use super::Onboarding;
use crate::provider::crypto::Column;
use crate::provider::domain::{MerchantRef, MerchantStatus, Uid};
use crate::provider::store::{merchants, outbox, MerchantRow, StoreError, Tx};

/// What a cancel callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Confirmed: the merchant is revoked, its tokens deleted, one event written.
    Revoked(MerchantRef),
    /// Nothing to do or nothing true: wrong `source`, unknown uid, not authorized, or the
    /// platform says the authorization is alive (a forged callback). Nothing changed.
    Ignored(&'static str),
    /// Could not be confirmed now (the platform did not answer): nothing changed; the
    /// platform may call again.
    Unconfirmed(String),
}

/// What `merchants revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked at the platform (or already dead there) and here.
    Revoked,
    /// Not authorized: tokens were already gone; status left as it was.
    NotAuthorized(MerchantStatus),
}

/// Why `merchants revoke` failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// No such merchant.
    #[error("no merchant {0}")]
    Unknown(MerchantRef),
    /// The platform did not confirm; nothing changed.
    #[error("the platform did not revoke: {0}")]
    Platform(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Onboarding {
    /// Handles `GET /connect/cancelled?source=<client_id>&uid=<uid>&auth_end=..`.
    #[tracing::instrument(skip(self, now))]
    pub async fn cancel_callback(
        &self,
        source: Option<&str>,
        uid: Option<&str>,
        now: SystemTime,
    ) -> Result<CancelOutcome, StoreError> {
        if source != Some(self.config.client_id.as_str()) {
            return Ok(CancelOutcome::Ignored("source is not this app"));
        }
        let Some(uid) = uid.and_then(Uid::parse) else {
            return Ok(CancelOutcome::Ignored("no uid"));
        };
        // Twice at most: a token found dead may have died of a refresh that ran meanwhile.
        for _ in 0..2 {
            let Some(row) = self.store.merchant_by_uid(&uid).await? else {
                return Ok(CancelOutcome::Ignored("unknown uid"));
            };
            if row.status != MerchantStatus::Authorized {
                return Ok(CancelOutcome::Ignored("not authorized"));
            }
            if row.access_expires_at.is_none_or(|at| at <= now) {
                // An expired token proves nothing either way; the refresher will learn the truth.
                return Ok(CancelOutcome::Unconfirmed(
                    "own access token expired".into(),
                ));
            }
            let Some(token) = row.access.as_ref().and_then(|s| {
                self.config
                    .keys
                    .open(&row.merchant_ref, Column::AccessToken, s)
                    .ok()
            }) else {
                return Ok(CancelOutcome::Unconfirmed(
                    "own access token does not open".into(),
                ));
            };
            match self.client.token_info(&token).await {
                Ok(info) if info.uid == uid => {
                    tracing::warn!(%uid, "cancel callback for a live authorization: ignored (forged?)");
                    return Ok(CancelOutcome::Ignored("authorization alive"));
                }
                Ok(_) => {
                    return Ok(CancelOutcome::Unconfirmed(
                        "token_info names another uid".into(),
                    ))
                }
                Err(e) if e.is_token_dead() => {
                    let mut tx = self.store.begin().await?;
                    let Some(locked) = merchants::lock(&mut tx, &row.merchant_ref).await? else {
                        return Ok(CancelOutcome::Ignored("unknown uid"));
                    };
                    if locked.status == MerchantStatus::Authorized
                        && locked.generation == row.generation
                    {
                        revoked(&mut tx, &locked, "authorization_withdrawn", now).await?;
                        tx.commit().await?;
                        tracing::info!(merchant = %row.merchant_ref, "authorization withdrawn: revoked");
                        return Ok(CancelOutcome::Revoked(row.merchant_ref));
                    }
                }
                Err(e) => return Ok(CancelOutcome::Unconfirmed(e.to_string())),
            }
        }
        Ok(CancelOutcome::Unconfirmed("the token kept changing".into()))
    }

    /// `merchants revoke REF`: `revokeoauth2` with its token, then revoked here with one event.
    /// The row stays locked meanwhile, so no refresh runs in between.
    #[tracing::instrument(skip(self, now), fields(merchant = %merchant))]
    pub async fn revoke(
        &self,
        merchant: &MerchantRef,
        now: SystemTime,
    ) -> Result<RevokeOutcome, RevokeError> {
        let mut tx = self.store.begin().await?;
        let Some(row) = merchants::lock(&mut tx, merchant).await? else {
            return Err(RevokeError::Unknown(merchant.clone()));
        };
        if row.status != MerchantStatus::Authorized {
            return Ok(RevokeOutcome::NotAuthorized(row.status));
        }
        let token = row
            .access
            .as_ref()
            .and_then(|s| self.config.keys.open(merchant, Column::AccessToken, s).ok());
        if let Some(token) = token {
            match self.client.revoke(&token).await {
                Ok(()) => {}
                // Already dead there: revoking here is all that is left.
                Err(e) if e.is_token_dead() => {}
                Err(e) => return Err(RevokeError::Platform(e.to_string())),
            }
        }
        revoked(&mut tx, &row, "revoked_by_provider", now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(RevokeOutcome::Revoked)
    }
}

async fn revoked(
    tx: &mut Tx,
    row: &MerchantRow,
    reason: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    outbox::end_authorization(tx, row, outbox::Ending::Revoked, reason, now).await
}
