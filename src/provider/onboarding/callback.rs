//! The authorization callback: the state used once, the code exchanged once, the merchant
//! stored with its event in one transaction, and where the browser goes next.

use std::time::SystemTime;

use serde::Deserialize;
use url::Url;

use super::{digest, is_token_shaped, Onboarding};
use crate::provider::domain::{EventKind, MerchantEvent, MerchantRef, MerchantStatus};
use crate::provider::refresh::seal_grant;
use crate::provider::store::links::{LinkRow, StateRefusal};
use crate::provider::store::{merchants, outbox, StoreError};

/// The callback's query: `code` and `state`, or Weibo's error fields and `state`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the button made.
    pub state: Option<String>,
    /// `access_denied` when the merchant said no.
    pub error: Option<String>,
    /// `21330` for a denial.
    pub error_code: Option<String>,
    /// Weibo's words.
    pub error_description: Option<String>,
}

/// How an authorization ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStatus {
    /// Authorized (or re-authorized).
    Success,
    /// Not authorized, and why (`access_denied`, `uid_bound_to_another_merchant`, ...).
    Failed(String),
}

/// What the callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The state was unknown, used or expired: nothing changed.
    Refused(StateRefusal),
    /// The attempt ended (either way) and was recorded.
    Finished {
        /// The merchant.
        merchant_ref: MerchantRef,
        /// How it ended.
        status: AuthStatus,
        /// Where to send the browser (the link's return URL with the result), or `None` for
        /// a result page.
        redirect: Option<Url>,
    },
}

impl Onboarding {
    /// Handles `GET {redirect_uri}?..` (see the module's rules).
    #[tracing::instrument(skip_all)]
    pub async fn callback(
        &self,
        params: &CallbackParams,
        now: SystemTime,
    ) -> Result<CallbackOutcome, StoreError> {
        let Some(state) = params.state.as_deref().filter(|s| is_token_shaped(s)) else {
            return Ok(CallbackOutcome::Refused(StateRefusal::Unknown));
        };
        let link = match self.store.take_state(&digest(state), now).await? {
            Ok(link) => link,
            Err(refusal) => {
                tracing::warn!(%refusal, "callback refused");
                return Ok(CallbackOutcome::Refused(refusal));
            }
        };
        let status = if params.error.is_some() || params.error_code.is_some() {
            let reason = params
                .error
                .as_deref()
                .filter(|e| {
                    (1..=40).contains(&e.len())
                        && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
                .unwrap_or("denied");
            self.failed(&link, reason, None, now).await?
        } else if let Some(code) = params
            .code
            .as_deref()
            .filter(|c| (1..=512).contains(&c.len()))
        {
            let obtained_at = SystemTime::now();
            match self.client.exchange_code(code).await {
                Ok(grant) => self.authorized(&link, &grant, obtained_at, now).await?,
                Err(e) => {
                    let detail = e.to_string();
                    self.failed(&link, "code_exchange_failed", Some(&detail), now)
                        .await?
                }
            }
        } else {
            self.failed(&link, "no_code", None, now).await?
        };
        let redirect = link
            .return_url
            .as_deref()
            .and_then(|u| self.config.return_origins.check(u))
            .map(|mut url| {
                let (word, reason) = match &status {
                    AuthStatus::Success => ("SUCCESS", ""),
                    AuthStatus::Failed(reason) => ("FAILED", reason.as_str()),
                };
                url.query_pairs_mut()
                    .append_pair("merchant_ref", link.merchant_ref.as_str())
                    .append_pair("auth_status", word)
                    .append_pair("auth_fail_reason", reason);
                url
            });
        Ok(CallbackOutcome::Finished {
            merchant_ref: link.merchant_ref,
            status,
            redirect,
        })
    }

    /// Stores the grant: uid bound (the database refuses a uid bound to another ref), tokens
    /// sealed, the event written, all in one transaction.
    async fn authorized(
        &self,
        link: &LinkRow,
        grant: &crate::provider::oauth::Grant,
        obtained_at: SystemTime,
        now: SystemTime,
    ) -> Result<AuthStatus, StoreError> {
        let merchant = &link.merchant_ref;
        let mut tx = self.store.begin().await?;
        let row = merchants::ensure(&mut tx, merchant).await?;
        let bound_elsewhere = matches!(
            (&row.uid, row.status),
            (Some(uid), MerchantStatus::Authorized | MerchantStatus::NeedsReauthorization) if *uid != grant.uid
        );
        if bound_elsewhere {
            drop(tx);
            return self
                .failed(link, "merchant_ref_bound_to_another_uid", None, now)
                .await;
        }
        let tokens = seal_grant(
            &self.config.keys,
            &self.policy,
            merchant,
            grant,
            obtained_at,
        );
        match merchants::store_tokens(&mut tx, merchant, &grant.uid, &tokens).await {
            Ok(_) => {}
            Err(e) if merchants::is_uid_taken(&e) => {
                drop(tx);
                tracing::warn!(%merchant, uid = %grant.uid, "uid already bound to another merchant");
                return self
                    .failed(link, "uid_bound_to_another_merchant", None, now)
                    .await;
            }
            Err(e) => return Err(e),
        }
        let kind = match row.status {
            MerchantStatus::Pending | MerchantStatus::Revoked => Some(EventKind::Authorized),
            MerchantStatus::NeedsReauthorization => Some(EventKind::Recovered),
            // Authorized again: new tokens, no change of state, no event.
            MerchantStatus::Authorized => None,
        };
        if let Some(kind) = kind {
            let event = MerchantEvent {
                merchant_ref: merchant.to_string(),
                uid: Some(grant.uid.to_string()),
                status: MerchantStatus::Authorized,
                reason: None,
                at: crate::clock::rfc3339(now).unwrap_or_default(),
            };
            outbox::enqueue(&mut tx, kind, &event).await?;
        }
        tx.commit().await?;
        tracing::info!(%merchant, uid = %grant.uid, "merchant authorized");
        Ok(AuthStatus::Success)
    }

    /// Records a failed attempt: the merchant's status stays, its last error and one
    /// `merchant.authorization_failed` event are written.
    async fn failed(
        &self,
        link: &LinkRow,
        reason: &str,
        detail: Option<&str>,
        now: SystemTime,
    ) -> Result<AuthStatus, StoreError> {
        let merchant = &link.merchant_ref;
        let mut tx = self.store.begin().await?;
        let row = merchants::ensure(&mut tx, merchant).await?;
        let error = match detail {
            Some(detail) => format!("{reason}: {}", crate::telemetry::clip(detail, 200)),
            None => reason.to_owned(),
        };
        merchants::note_error(&mut tx, merchant, &error).await?;
        let event = MerchantEvent {
            merchant_ref: merchant.to_string(),
            uid: row.uid.as_ref().map(ToString::to_string),
            status: row.status,
            reason: Some(reason.to_owned()),
            at: crate::clock::rfc3339(now).unwrap_or_default(),
        };
        outbox::enqueue(&mut tx, EventKind::AuthorizationFailed, &event).await?;
        tx.commit().await?;
        tracing::warn!(%merchant, %error, "authorization failed");
        Ok(AuthStatus::Failed(reason.to_owned()))
    }
}
