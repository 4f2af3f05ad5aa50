//! `merchants rekey`: every token moved under the newest key, a batch per transaction, while
//! the relay runs (rows not yet moved still open with their old key).

use sqlx::Row;

use super::{Store, StoreError};
use crate::provider::crypto::{Column, KeyRing, Sealed};
use crate::provider::domain::MerchantRef;

/// What a rekey did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Rows whose tokens now sit under the newest key.
    pub moved: u64,
    /// Rows already there.
    pub current: u64,
    /// Rows whose tokens did not open (a key missing from the ring, or altered bytes): left
    /// as they are, named in the log.
    pub failed: u64,
}

impl Store {
    /// Moves every token to `keys`' newest key, `batch` rows per transaction. Rows a refresh
    /// holds at that moment are waited for (the refresh seals with the newest key anyway).
    pub async fn rekey(&self, keys: &KeyRing, batch: i64) -> Result<RekeyReport, StoreError> {
        let mut report = RekeyReport::default();
        let mut after = String::new();
        loop {
            let mut tx = self.begin().await?;
            let rows = sqlx::query(
                "SELECT merchant_ref, access_token_key, access_token_sealed, refresh_token_key, \
                 refresh_token_sealed FROM provider_merchants WHERE merchant_ref > $1 \
                 AND access_token_sealed IS NOT NULL ORDER BY merchant_ref LIMIT $2 FOR UPDATE",
            )
            .bind(&after)
            .bind(batch.max(1))
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let reference: String = row.try_get(0)?;
                after.clone_from(&reference);
                let Some(merchant) = MerchantRef::parse(&reference) else {
                    report.failed += 1;
                    continue;
                };
                let access = Sealed {
                    key_id: row.try_get(1)?,
                    blob: row.try_get(2)?,
                };
                let refresh = Sealed {
                    key_id: row.try_get(3)?,
                    blob: row.try_get(4)?,
                };
                if keys.is_newest(&access) && keys.is_newest(&refresh) {
                    report.current += 1;
                    continue;
                }
                let reseal = |column, sealed: &Sealed| {
                    keys.open(&merchant, column, sealed)
                        .map(|token| keys.seal(&merchant, column, &token))
                };
                match (
                    reseal(Column::AccessToken, &access),
                    reseal(Column::RefreshToken, &refresh),
                ) {
                    (Ok(access), Ok(refresh)) => {
                        sqlx::query(
                            "UPDATE provider_merchants SET access_token_key = $2, \
                             access_token_sealed = $3, refresh_token_key = $4, \
                             refresh_token_sealed = $5 WHERE merchant_ref = $1",
                        )
                        .bind(merchant.as_str())
                        .bind(&access.key_id)
                        .bind(&access.blob)
                        .bind(&refresh.key_id)
                        .bind(&refresh.blob)
                        .execute(&mut *tx)
                        .await?;
                        report.moved += 1;
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::error!(%merchant, error = %e, "rekey: tokens left as they are");
                        report.failed += 1;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(report)
    }
}
