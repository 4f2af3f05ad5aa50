//! Any bytes, as a form or JSON push body: parsing, verification and the envelope must
//! never panic, and whatever verifies must produce a well-formed envelope.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use weibo_relay::config::{Merchants, Settings};
use weibo_relay::push::{Body, ContentKind, UnverifiedPush};

fn merchants() -> &'static Merchants {
    static MERCHANTS: OnceLock<Merchants> = OnceLock::new();
    MERCHANTS.get_or_init(|| {
        Settings::from_toml(
            "[[merchants]]\nappid = \"100023\"\nsign_key = \"fixture-sign-key\"\nclient_id = \"c\"\nclient_secret = \"s\"\nuid = \"u\"\n",
        )
        .expect("fuzz settings")
        .merchants
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let kind = if selector & 1 == 0 { ContentKind::Form } else { ContentKind::Json };
    let Ok(body) = Body::parse(kind, body) else {
        return;
    };
    let Ok(push) = UnverifiedPush::parse(body) else {
        return;
    };
    // A wide window so that signed inputs from the corpus get through to the envelope.
    let Ok(push) = push.verify(merchants(), 1_700_000_000, u64::MAX / 2) else {
        return;
    };
    let envelope = push.envelope(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let parsed: serde_json::Value = serde_json::from_slice(&envelope).expect("envelope is JSON");
    assert_eq!(parsed["event_id"], push.event_id().to_string());
    assert!(push.routing_key().starts_with("order."));
});
