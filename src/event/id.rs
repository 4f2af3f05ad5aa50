//! The content-derived event id (platform spec section 5).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::{AppId, SubOrderId};

/// 128 bits of a sha256, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId([u8; 16]);

impl EventId {
    /// A pushed event: the first 128 bits of `sha256(appid \n type \n data)` over the fields as
    /// the signature covers them (the canonical form that matched), so a padded replay of a
    /// push has the id of the original.
    pub fn derive(appid: &str, type_raw: &str, data_raw: &str) -> Self {
        Self::of(&[appid, type_raw, data_raw])
    }

    /// A reconciled event: `sha256(appid \n "reconcile" \n sub_order_id \n state_code)`, the
    /// same for every sweep that finds that state.
    pub fn reconciled(appid: &AppId, sub_order_id: &SubOrderId, state_code: &str) -> Self {
        Self::of(&[
            appid.as_str(),
            "reconcile",
            sub_order_id.as_str(),
            state_code,
        ])
    }

    fn of(parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hasher.update(b"\n");
            }
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    /// The id as a number, for compact sets.
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hexstr::lower(&self.0))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconciled_event_id_is_the_contracts() {
        let expected = hex::encode(&Sha256::digest(b"100023\nreconcile\n42\n301")[..16]);
        let (appid, sub) = (AppId::parse("100023"), SubOrderId::parse("42"));
        assert_eq!(
            EventId::reconciled(&appid.unwrap(), &sub.unwrap(), "301").to_string(),
            expected
        );
    }
}
