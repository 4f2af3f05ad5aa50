//! The event id the relay derives for a push.

use sha2::{Digest, Sha256};

pub(crate) fn expected_event_id(appid: &str, type_: &str, data: &str) -> String {
    let digest = Sha256::digest(format!("{appid}\n{type_}\n{data}").as_bytes());
    hex::encode(&digest[..16])
}
