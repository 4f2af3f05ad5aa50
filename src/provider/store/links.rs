//! Onboarding links and the `state` each one turns into, both kept only as sha256 hashes of
//! what the browser carries, each usable once and only before it expires.

use std::time::SystemTime;

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{from_db, to_db, Store, StoreError};
use crate::provider::domain::MerchantRef;

/// A link as stored.
#[derive(Debug, Clone)]
pub struct LinkRow {
    /// The merchant it onboards.
    pub merchant_ref: MerchantRef,
    /// Where the browser goes afterwards (already checked against the allowed origins).
    pub return_url: Option<String>,
    /// When it (and its state) expire.
    pub expires_at: SystemTime,
}

/// Why a link does not lead to Weibo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// No such link.
    #[error("this link is unknown")]
    Unknown,
    /// Its button was pressed already.
    #[error("this link has been used")]
    Used,
    /// Past its life.
    #[error("this link has expired")]
    Expired,
}

/// Why a callback's `state` is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRefusal {
    /// Never issued (or forged).
    #[error("unknown state")]
    Unknown,
    /// Already used by an earlier callback.
    #[error("state already used")]
    Used,
    /// Past its link's life.
    #[error("state expired")]
    Expired,
}

/// Stores a new link for `merchant`.
pub async fn insert_link(
    conn: &mut PgConnection,
    link_hash: &[u8; 32],
    merchant: &MerchantRef,
    return_url: Option<&str>,
    expires_at: SystemTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO provider_links (link_hash, merchant_ref, return_url, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&link_hash[..])
    .bind(merchant.as_str())
    .bind(return_url)
    .bind(to_db(expires_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type LinkTuple = (
    String,
    Option<String>,
    OffsetDateTime,
    Option<OffsetDateTime>,
);

fn link_row((merchant_ref, return_url, expires_at, _): LinkTuple) -> Result<LinkRow, StoreError> {
    Ok(LinkRow {
        merchant_ref: MerchantRef::parse(&merchant_ref)
            .ok_or_else(|| StoreError::Corrupt(format!("link for {merchant_ref:?}")))?,
        return_url,
        expires_at: from_db(expires_at),
    })
}

impl Store {
    /// The link, if it still leads to Weibo at `now`.
    pub async fn open_link(
        &self,
        link_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Result<LinkRow, LinkRefusal>, StoreError> {
        let found: Option<LinkTuple> = sqlx::query_as(
            "SELECT merchant_ref, return_url, expires_at, used_at FROM provider_links \
             WHERE link_hash = $1",
        )
        .bind(&link_hash[..])
        .fetch_optional(self.pool())
        .await?;
        Ok(match found {
            None => Err(LinkRefusal::Unknown),
            Some((_, _, _, Some(_))) => Err(LinkRefusal::Used),
            Some((_, _, expires_at, _)) if from_db(expires_at) <= now => Err(LinkRefusal::Expired),
            Some(link) => Ok(link_row(link)?),
        })
    }

    /// Uses the link (once: a second press finds it used) and binds `state_hash` to it,
    /// expiring with it. Both or neither.
    pub async fn use_link(
        &self,
        link_hash: &[u8; 32],
        state_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Result<LinkRow, LinkRefusal>, StoreError> {
        let mut tx = self.begin().await?;
        let used: Option<LinkTuple> = sqlx::query_as(
            "UPDATE provider_links SET used_at = $2 WHERE link_hash = $1 AND used_at IS NULL \
             AND expires_at > $2 RETURNING merchant_ref, return_url, expires_at, used_at",
        )
        .bind(&link_hash[..])
        .bind(to_db(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(link) = used else {
            drop(tx);
            return Ok(Err(self
                .open_link(link_hash, now)
                .await?
                .err()
                .unwrap_or(LinkRefusal::Used)));
        };
        let link = link_row(link)?;
        sqlx::query(
            "INSERT INTO provider_states (state_hash, link_hash, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&state_hash[..])
        .bind(&link_hash[..])
        .bind(to_db(link.expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(link))
    }

    /// Uses the state (once), returning the link it was made from. An unknown, used or expired
    /// state changes nothing.
    pub async fn take_state(
        &self,
        state_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Result<LinkRow, StateRefusal>, StoreError> {
        let taken: Option<LinkTuple> = sqlx::query_as(
            "WITH taken AS (UPDATE provider_states SET used_at = $2 WHERE state_hash = $1 \
             AND used_at IS NULL AND expires_at > $2 RETURNING link_hash) \
             SELECT l.merchant_ref, l.return_url, l.expires_at, l.used_at \
             FROM provider_links l JOIN taken USING (link_hash)",
        )
        .bind(&state_hash[..])
        .bind(to_db(now))
        .fetch_optional(self.pool())
        .await?;
        if let Some(link) = taken {
            return Ok(Ok(link_row(link)?));
        }
        let found: Option<(OffsetDateTime, Option<OffsetDateTime>)> =
            sqlx::query_as("SELECT expires_at, used_at FROM provider_states WHERE state_hash = $1")
                .bind(&state_hash[..])
                .fetch_optional(self.pool())
                .await?;
        Ok(Err(match found {
            None => StateRefusal::Unknown,
            Some((_, Some(_))) => StateRefusal::Used,
            Some(_) => StateRefusal::Expired,
        }))
    }

    /// Deletes links (and their states) that expired before `before`; returns how many.
    pub async fn forget_expired_links(&self, before: SystemTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM provider_links WHERE expires_at < $1")
            .bind(to_db(before))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
