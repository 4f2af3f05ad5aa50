//! Merchant rows: read, locked for a change, and changed.

use std::time::SystemTime;

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use super::{from_db, to_db, Store, StoreError};
use crate::provider::crypto::Sealed;
use crate::provider::domain::{MerchantRef, MerchantStatus, Uid};

/// The columns every read takes, in [`MerchantRow::from_row`]'s order.
const COLUMNS: &str = "merchant_ref, uid, status, access_token_key, access_token_sealed, \
    refresh_token_key, refresh_token_sealed, access_expires_at, refresh_expires_at, \
    last_refresh_at, last_error, generation, next_refresh_at, refresh_failures";

/// One merchant as stored, tokens still sealed. Debug shows no token (see [`Sealed`]).
#[derive(Debug, Clone)]
pub struct MerchantRow {
    /// The provider's name for it.
    pub merchant_ref: MerchantRef,
    /// Its Weibo uid, once it authorized.
    pub uid: Option<Uid>,
    /// Its status.
    pub status: MerchantStatus,
    /// The sealed access token (authorized only).
    pub access: Option<Sealed>,
    /// The sealed refresh token (authorized only).
    pub refresh: Option<Sealed>,
    /// When the access token expires.
    pub access_expires_at: Option<SystemTime>,
    /// When the refresh token expires.
    pub refresh_expires_at: Option<SystemTime>,
    /// When a token was last obtained (authorization or refresh).
    pub last_refresh_at: Option<SystemTime>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Moves on every new access token.
    pub generation: i64,
    /// When the refresher next looks at it.
    pub next_refresh_at: Option<SystemTime>,
    /// Failed refreshes since the last success.
    pub refresh_failures: i32,
}

impl MerchantRow {
    fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        let text = |i: usize| row.try_get::<Option<String>, _>(i);
        let at = |i: usize| {
            row.try_get::<Option<OffsetDateTime>, _>(i)
                .map(|t| t.map(from_db))
        };
        let sealed = |key: usize, blob: usize| -> Result<Option<Sealed>, sqlx::Error> {
            Ok(
                match (text(key)?, row.try_get::<Option<Vec<u8>>, _>(blob)?) {
                    (Some(key_id), Some(blob)) => Some(Sealed { key_id, blob }),
                    _ => None,
                },
            )
        };
        let reference: String = row.try_get(0)?;
        let status: String = row.try_get(2)?;
        let uid = text(1)?;
        Ok(Self {
            merchant_ref: MerchantRef::parse(&reference)
                .ok_or_else(|| StoreError::Corrupt(format!("merchant_ref {reference:?}")))?,
            uid: match uid {
                Some(uid) => Some(
                    Uid::parse(&uid).ok_or_else(|| StoreError::Corrupt(format!("uid {uid:?}")))?,
                ),
                None => None,
            },
            status: MerchantStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            access: sealed(3, 4)?,
            refresh: sealed(5, 6)?,
            access_expires_at: at(7)?,
            refresh_expires_at: at(8)?,
            last_refresh_at: at(9)?,
            last_error: text(10)?,
            generation: row.try_get(11)?,
            next_refresh_at: at(12)?,
            refresh_failures: row.try_get(13)?,
        })
    }

    /// What may be shown: everything but the tokens.
    pub fn view(&self) -> MerchantView {
        let time = |t: Option<SystemTime>| t.and_then(crate::clock::rfc3339);
        MerchantView {
            merchant_ref: self.merchant_ref.to_string(),
            uid: self.uid.as_ref().map(ToString::to_string),
            status: self.status,
            last_refresh_at: time(self.last_refresh_at),
            access_expires_at: time(self.access_expires_at),
            refresh_expires_at: time(self.refresh_expires_at),
            last_error: self.last_error.clone(),
        }
    }
}

/// A merchant as `merchants list|show --json` and the gateway print it (contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MerchantView {
    /// The provider's name for it.
    pub merchant_ref: String,
    /// Its Weibo uid.
    pub uid: Option<String>,
    /// Its status.
    pub status: MerchantStatus,
    /// RFC 3339.
    pub last_refresh_at: Option<String>,
    /// RFC 3339.
    pub access_expires_at: Option<String>,
    /// RFC 3339.
    pub refresh_expires_at: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Tokens just obtained, sealed, with their schedule.
#[derive(Debug, Clone)]
pub struct NewTokens {
    /// The sealed access token.
    pub access: Sealed,
    /// The sealed refresh token.
    pub refresh: Sealed,
    /// When the access token expires.
    pub access_expires_at: SystemTime,
    /// When the refresh token expires.
    pub refresh_expires_at: SystemTime,
    /// When they were obtained (the request's start).
    pub obtained_at: SystemTime,
    /// When the refresher should next renew them.
    pub next_refresh_at: SystemTime,
}

/// Inserts `merchant` as `pending` unless it exists; returns its row (locked).
pub async fn ensure(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
) -> Result<MerchantRow, StoreError> {
    sqlx::query("INSERT INTO provider_merchants (merchant_ref) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(merchant.as_str())
        .execute(&mut *conn)
        .await?;
    lock(conn, merchant)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("{merchant} vanished after its insert")))
}

/// The merchant's row, locked until the transaction ends (another process asking for the same
/// lock waits, then reads what this one committed).
pub async fn lock(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
) -> Result<Option<MerchantRow>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM provider_merchants WHERE merchant_ref = $1 FOR UPDATE");
    let row = sqlx::query(&sql)
        .bind(merchant.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(MerchantRow::from_row).transpose()
}

/// Writes new tokens: the merchant is `status` (authorized), bound to `uid`, its generation
/// moved on, its failures forgotten. A uid bound to another merchant fails with the database's
/// unique violation (see [`is_uid_taken`]).
pub async fn store_tokens(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
    uid: &Uid,
    tokens: &NewTokens,
) -> Result<i64, StoreError> {
    let generation: i64 = sqlx::query_scalar(
        "UPDATE provider_merchants SET uid = $2, status = 'authorized', \
         access_token_key = $3, access_token_sealed = $4, refresh_token_key = $5, \
         refresh_token_sealed = $6, access_expires_at = $7, refresh_expires_at = $8, \
         last_refresh_at = $9, next_refresh_at = $10, last_error = NULL, refresh_failures = 0, \
         generation = generation + 1, updated_at = now() \
         WHERE merchant_ref = $1 RETURNING generation",
    )
    .bind(merchant.as_str())
    .bind(uid.as_str())
    .bind(&tokens.access.key_id)
    .bind(&tokens.access.blob)
    .bind(&tokens.refresh.key_id)
    .bind(&tokens.refresh.blob)
    .bind(to_db(tokens.access_expires_at))
    .bind(to_db(tokens.refresh_expires_at))
    .bind(to_db(tokens.obtained_at))
    .bind(to_db(tokens.next_refresh_at))
    .fetch_one(&mut *conn)
    .await?;
    Ok(generation)
}

/// True when `error` is the uid's unique constraint: that uid belongs to another merchant.
pub fn is_uid_taken(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(e))
        if e.constraint() == Some("provider_merchants_uid_key"))
}

/// Leaves `authorized` for `status` (needs_reauthorization or revoked), deleting both tokens.
pub async fn drop_tokens(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
    status: MerchantStatus,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE provider_merchants SET status = $2, access_token_key = NULL, \
         access_token_sealed = NULL, refresh_token_key = NULL, refresh_token_sealed = NULL, \
         next_refresh_at = NULL, last_error = COALESCE($3, last_error), updated_at = now() \
         WHERE merchant_ref = $1",
    )
    .bind(merchant.as_str())
    .bind(status.as_str())
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Notes a failed refresh: the error, one more failure, and when to look again.
pub async fn record_failure(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
    error: &str,
    retry_at: SystemTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE provider_merchants SET last_error = $2, refresh_failures = refresh_failures + 1, \
         next_refresh_at = $3, updated_at = now() WHERE merchant_ref = $1",
    )
    .bind(merchant.as_str())
    .bind(error)
    .bind(to_db(retry_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Notes an error without changing anything else (an authorization attempt that failed).
pub async fn note_error(
    conn: &mut PgConnection,
    merchant: &MerchantRef,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE provider_merchants SET last_error = $2, updated_at = now() WHERE merchant_ref = $1",
    )
    .bind(merchant.as_str())
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Authorized merchants due at `now`, soonest first, skipping rows another process holds
/// (it is refreshing them).
pub async fn due(
    store: &Store,
    now: SystemTime,
    limit: i64,
) -> Result<Vec<MerchantRef>, StoreError> {
    let refs: Vec<String> = sqlx::query_scalar(
        "SELECT merchant_ref FROM provider_merchants WHERE status = 'authorized' \
         AND next_refresh_at <= $1 ORDER BY next_refresh_at LIMIT $2",
    )
    .bind(to_db(now))
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(refs.iter().filter_map(|r| MerchantRef::parse(r)).collect())
}

impl Store {
    /// One merchant, unlocked.
    pub async fn merchant(
        &self,
        merchant: &MerchantRef,
    ) -> Result<Option<MerchantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_merchants WHERE merchant_ref = $1");
        let row = sqlx::query(&sql)
            .bind(merchant.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(MerchantRow::from_row).transpose()
    }

    /// The merchant bound to `uid`, unlocked.
    pub async fn merchant_by_uid(&self, uid: &Uid) -> Result<Option<MerchantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_merchants WHERE uid = $1");
        let row = sqlx::query(&sql)
            .bind(uid.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(MerchantRow::from_row).transpose()
    }

    /// `(uid, merchant_ref)` of every authorized merchant (the receiver's book).
    pub async fn authorized_uids(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT uid, merchant_ref FROM provider_merchants \
             WHERE status = 'authorized' AND uid IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Every merchant, by merchant_ref.
    pub async fn merchants(&self) -> Result<Vec<MerchantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_merchants ORDER BY merchant_ref");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(MerchantRow::from_row).collect()
    }

    /// How many merchants are in each status.
    pub async fn count_by_status(&self) -> Result<Vec<(MerchantStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM provider_merchants GROUP BY status ORDER BY status",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| MerchantStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }
}
