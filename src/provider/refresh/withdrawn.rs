//! A call refused, then the refresh token refused too: the merchant may have withdrawn the
//! authorization at Weibo without the cancel callback reaching the relay. The contract wants
//! that confirmed with `get_token_info` and the merchant `revoked`, not left to
//! `needs_reauthorization`.

use std::time::SystemTime;

use super::Refresher;
use crate::provider::crypto::Column;
use crate::provider::store::MerchantRow;

impl Refresher {
    /// True when `get_token_info` calls the row's access token dead although its life has
    /// not run out: the grant behind it was withdrawn. An expired token, one that does not
    /// open, a live one or no answer proves nothing (the caller keeps `invalid_grant`'s
    /// meaning). A crash between a refresh's answer and its commit leaves the same signs;
    /// either way the merchant must authorize again.
    pub(super) async fn withdrawn(&self, row: &MerchantRow, now: SystemTime) -> bool {
        if row.access_expires_at.is_none_or(|at| at <= now) {
            return false;
        }
        let Some(token) = row.access.as_ref().and_then(|sealed| {
            self.keys
                .open(&row.merchant_ref, Column::AccessToken, sealed)
                .ok()
        }) else {
            return false;
        };
        match self.client.token_info(&token).await {
            Err(e) => e.is_token_withdrawn(),
            Ok(_) => false,
        }
    }
}
