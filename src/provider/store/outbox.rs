//! The outbox of merchant events: written in the transaction that changes the merchant, so
//! "one message per change of state" survives a crash between the commit and the publish.
//! A publisher takes rows (leased, so two publishers do not take the same row at once),
//! publishes each with confirms, then confirms them here; rows of a publisher that died
//! come back when their lease ends. Delivery is at least once: a message carries its row
//! id as `message_id`, for consumers to drop a repeat.

use std::time::{Duration, SystemTime};

use sqlx::PgConnection;

use super::{to_db, Store, StoreError};
use crate::provider::domain::{EventKind, MerchantEvent, MerchantStatus};

/// One event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row id: the message's `message_id`.
    pub id: i64,
    /// `merchant.authorized`, ...
    pub routing_key: String,
    /// The merchant it is about (header `x-weibo-merchant`).
    pub merchant_ref: String,
    /// The JSON body.
    pub body: String,
}

/// The two ways an authorization ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The platform refused the refresh token: the merchant must consent again.
    NeedsReauthorization,
    /// Withdrawn (confirmed) or revoked by the provider.
    Revoked,
}

/// Leaves `authorized` as `ending` says: both tokens deleted and the change's one event
/// written, in the caller's transaction.
pub async fn end_authorization(
    conn: &mut PgConnection,
    row: &super::MerchantRow,
    ending: Ending,
    reason: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    let (status, kind) = match ending {
        Ending::NeedsReauthorization => (
            MerchantStatus::NeedsReauthorization,
            EventKind::NeedsReauthorization,
        ),
        Ending::Revoked => (MerchantStatus::Revoked, EventKind::Revoked),
    };
    super::merchants::drop_tokens(conn, &row.merchant_ref, status, Some(reason)).await?;
    let event = MerchantEvent {
        merchant_ref: row.merchant_ref.to_string(),
        uid: row.uid.as_ref().map(ToString::to_string),
        status,
        reason: Some(reason.to_owned()),
        at: crate::clock::rfc3339(now).unwrap_or_default(),
    };
    enqueue(conn, kind, &event).await?;
    Ok(())
}

/// Adds an event in the caller's transaction; returns its id.
pub async fn enqueue(
    conn: &mut PgConnection,
    kind: EventKind,
    event: &MerchantEvent,
) -> Result<i64, StoreError> {
    let body = serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO provider_outbox (merchant_ref, routing_key, body) VALUES ($1, $2, $3::jsonb) \
         RETURNING id",
    )
    .bind(&event.merchant_ref)
    .bind(kind.routing_key())
    .bind(body)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

impl Store {
    /// Takes up to `limit` unpublished events, oldest first, leased for `lease` from `now`:
    /// no other publisher takes them until then.
    pub async fn take_outbox(
        &self,
        limit: i64,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let until = crate::clock::Later::later(now, lease);
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "UPDATE provider_outbox SET claimed_until = $3 WHERE id IN ( \
               SELECT id FROM provider_outbox WHERE published_at IS NULL \
               AND (claimed_until IS NULL OR claimed_until <= $2) \
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, routing_key, merchant_ref, body::text",
        )
        .bind(limit)
        .bind(to_db(now))
        .bind(to_db(until))
        .fetch_all(self.pool())
        .await?;
        let mut rows: Vec<OutboxRow> = rows
            .into_iter()
            .map(|(id, routing_key, merchant_ref, body)| OutboxRow {
                id,
                routing_key,
                merchant_ref,
                body,
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Marks events published (the broker confirmed them).
    pub async fn confirm_outbox(&self, ids: &[i64], now: SystemTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE provider_outbox SET published_at = $2 WHERE id = ANY($1)")
            .bind(ids)
            .bind(to_db(now))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Gives events back before their lease ends (the publish failed).
    pub async fn release_outbox(&self, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE provider_outbox SET claimed_until = NULL WHERE id = ANY($1) AND published_at IS NULL",
        )
        .bind(ids)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every event of `merchant`, published or not, oldest first (for tests and `merchants show`).
    pub async fn events_of(&self, merchant: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, routing_key, merchant_ref, body::text FROM provider_outbox \
             WHERE merchant_ref = $1 ORDER BY id",
        )
        .bind(merchant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, routing_key, merchant_ref, body)| OutboxRow {
                id,
                routing_key,
                merchant_ref,
                body,
            })
            .collect())
    }
}
