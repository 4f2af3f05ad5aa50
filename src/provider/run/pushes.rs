//! Provider mode's pushes: every push is signed by the provider; a signed field
//! (`provider.push_merchant_field`, `uid`) names the merchant. The receiver looks the uid up
//! in a book of authorized merchants that a task reloads from the store, never per push: a
//! flood of unknown uids costs no query, and a merchant authorized a moment ago is found
//! within one reload (its first push meanwhile gets a 403, which the platform retries).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::event::MerchantTag;
use crate::provider::store::{Store, StoreError};
use crate::push::{PushError, VerifiedPush};

/// Authorized merchants by uid. Cheap to clone: clones share the book.
#[derive(Clone, Default)]
pub struct UidBook(Arc<RwLock<Arc<HashMap<String, String>>>>);

impl UidBook {
    /// The merchant_ref of an authorized merchant with `uid`.
    pub fn lookup(&self, uid: &str) -> Option<String> {
        let book = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        book.get(uid).cloned()
    }

    /// Reads the authorized merchants from `store` and replaces the book.
    pub async fn reload(&self, store: &Store) -> Result<usize, StoreError> {
        let map: HashMap<String, String> = store.authorized_uids().await?.into_iter().collect();
        let n = map.len();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        Ok(n)
    }
}

/// What the receiver needs in provider mode.
#[derive(Clone)]
pub struct ProviderPushes {
    /// The signed field naming the merchant.
    pub field: String,
    /// Authorized merchants by uid.
    pub uids: UidBook,
}

impl ProviderPushes {
    /// `push` tagged with the merchant its signed uid names; refused when the field is
    /// missing or names no authorized merchant.
    pub fn name_merchant(&self, push: VerifiedPush) -> Result<VerifiedPush, PushError> {
        let uid = push.signed(&self.field).unwrap_or_default();
        let Some(merchant_ref) = self.uids.lookup(uid) else {
            return Err(PushError::UnknownUid(
                crate::telemetry::printable(&uid.chars().take(32).collect::<String>()).into_owned(),
            ));
        };
        let uid = uid.to_owned();
        Ok(push.for_merchant(MerchantTag { merchant_ref, uid }))
    }
}
