//! Where a call's access_token comes from: the deployment's keeper (a merchant's own app,
//! `[[merchants]]`) or, in provider mode, the store's token of the merchant a command or a
//! sweep names by `merchant_ref`, refreshed through the store's one-refresh-per-merchant rule.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ids::AppId;
use crate::keeper::{KeeperError, TokenKeeper};
use crate::provider::domain::{MerchantName, MerchantRef, Uid};
use crate::provider::refresh::{RefreshError, Refresher, Why};
use crate::weibo::Token;

/// The token source of one process's callers (the worker, the sweeper).
#[derive(Clone)]
pub enum Tokens {
    /// Self-developed mode: one token per configured appid, kept by the elected keeper.
    Keeper(TokenKeeper),
    /// Provider mode: each merchant's token from the store.
    Provider(Refresher),
}

/// A token a call is made with, and what to name if the platform refuses it.
pub struct Held {
    /// The token.
    pub token: Arc<Token>,
    /// Provider mode: the merchant and the store generation it belongs to.
    merchant: Option<(MerchantRef, i64)>,
}

/// Why a command has no token to call with.
#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    /// The keeper has none in time (waits without using an attempt).
    #[error(transparent)]
    Keeper(#[from] KeeperError),
    /// Provider mode, a command without `merchant_ref` or `uid`: it can never be called.
    #[error("provider mode: the command names no merchant_ref (or uid)")]
    NoMerchantRef,
    /// Provider mode: no merchant has this ref (dead-lettered).
    #[error("unknown merchant_ref {0}")]
    UnknownMerchant(String),
    /// Provider mode: no merchant has this uid (dead-lettered).
    #[error("no merchant has uid {0}")]
    UnknownUid(String),
    /// Provider mode: the command's uid belongs to another merchant than its ref
    /// (dead-lettered: whose order it is cannot be told).
    #[error("uid {uid} is merchant_ref {bound}'s, not {named}'s")]
    MerchantMismatch {
        /// The command's uid.
        uid: String,
        /// The command's ref.
        named: String,
        /// The uid's merchant.
        bound: String,
    },
    /// Provider mode: the merchant is not authorized now (needs re-authorization or was
    /// revoked): an attempt that fails, so the command ends in `.dead` with this reason
    /// unless the merchant is authorized again before its attempts run out.
    #[error("merchant {0} is not authorized (needs re-authorization or revoked)")]
    NotAuthorized(String),
    /// Provider mode: the store could not be read (waits without using an attempt).
    #[error("the merchants' store: {0}")]
    Store(String),
}

impl Tokens {
    /// [`Tokens::get`] for a command, which may name its merchant by uid: resolved through
    /// the store, a uid bound to no merchant, or to another than the command's ref, is
    /// [`NoToken::UnknownUid`] or [`NoToken::MerchantMismatch`].
    pub async fn for_command(
        &self,
        appid: &AppId,
        merchant: Option<&MerchantName>,
    ) -> Result<Held, NoToken> {
        let Self::Provider(refresher) = self else {
            return self.get(appid, None).await;
        };
        let resolved = match merchant {
            None => None,
            Some(MerchantName::Ref(merchant_ref)) => Some(merchant_ref.clone()),
            Some(MerchantName::Uid(uid)) => Some(bound_to(refresher, uid).await?),
            Some(MerchantName::Both(named, uid)) => {
                let bound = bound_to(refresher, uid).await?;
                if &bound != named {
                    return Err(NoToken::MerchantMismatch {
                        uid: uid.to_string(),
                        named: named.to_string(),
                        bound: bound.to_string(),
                    });
                }
                Some(bound)
            }
        };
        self.get(appid, resolved.as_ref()).await
    }

    /// The token to call for `appid` (provider mode: for `merchant`) with.
    pub async fn get(
        &self,
        appid: &AppId,
        merchant: Option<&MerchantRef>,
    ) -> Result<Held, NoToken> {
        match self {
            Self::Keeper(keeper) => Ok(Held {
                token: keeper.get(appid).await?,
                merchant: None,
            }),
            Self::Provider(refresher) => {
                let merchant = merchant.ok_or(NoToken::NoMerchantRef)?;
                let current = match refresher.access_token(merchant).await {
                    Ok(Some(current)) => current,
                    Ok(None) => return Err(NoToken::NotAuthorized(merchant.to_string())),
                    Err(RefreshError::Unknown(_)) => {
                        return Err(NoToken::UnknownMerchant(merchant.to_string()))
                    }
                    Err(RefreshError::Store(e)) => return Err(NoToken::Store(e.to_string())),
                };
                let left = current
                    .expires_at
                    .and_then(|at| at.duration_since(SystemTime::now()).ok())
                    .unwrap_or(Duration::from_secs(60));
                let token = Token::new(current.access_token, 0, left, tokio::time::Instant::now());
                Ok(Held {
                    token: Arc::new(token),
                    merchant: Some((merchant.clone(), current.generation)),
                })
            }
        }
    }

    /// The platform refused `held`: the next [`Tokens::get`] returns a fresh token. The keeper
    /// refreshes once however many calls report it; the store refreshes the merchant once
    /// across the deployment (a process that finds it done reads the result).
    pub async fn rejected(&self, appid: &AppId, held: &Held) -> Result<(), NoToken> {
        match (self, &held.merchant) {
            (Self::Keeper(keeper), _) => Ok(keeper.invalidate(appid, &held.token)?),
            (Self::Provider(refresher), Some((merchant, generation))) => {
                let generation = *generation;
                let outcome = refresher
                    .refresh(merchant, Why::Rejected { generation }, SystemTime::now())
                    .await
                    .map_err(|e| NoToken::Store(e.to_string()))?;
                tracing::info!(%merchant, ?outcome, "access_token rejected by the platform");
                Ok(())
            }
            (Self::Provider(_), None) => Err(NoToken::NoMerchantRef),
        }
    }
}

/// The merchant a command's uid names, whatever its status.
async fn bound_to(refresher: &Refresher, uid: &Uid) -> Result<MerchantRef, NoToken> {
    refresher
        .merchant_of(uid)
        .await
        .map_err(|e| NoToken::Store(e.to_string()))?
        .ok_or_else(|| NoToken::UnknownUid(uid.to_string()))
}
