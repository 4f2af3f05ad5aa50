//! The headers a command carries between attempts.
//!
//! Whoever can publish to the fulfilment queue can set any header, so the relay trusts none it
//! did not write itself: its attempt count travels sealed with an HMAC under the merchant's
//! sign key ([`SEALED_ATTEMPTS`]), and of a producer's own headers only the trace context is
//! carried on, checked and bounded, so a command cannot grow past what the broker accepts.

use hmac::{Hmac, Mac};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use sha2::Sha256;

/// Attempts made so far on the platform, for people and `dlq list`; never read back.
pub const ATTEMPTS: &str = "x-attempts";
/// Why the command was dead-lettered.
pub const DEATH_REASON: &str = "x-death-reason";
/// The platform code of the last attempt (absent when no code was read).
pub const LAST_CODE: &str = "x-last-code";
/// The relay's own attempt count, `<n>:<tag>`; the only count the worker acts on.
pub const SEALED_ATTEMPTS: &str = "x-weibo-relay-attempts";

/// Tag length in bytes (hex doubles it): enough that guessing one is hopeless.
const TAG_BYTES: usize = 16;

/// The attempt count sealed in `properties` for this `body`, or 0 when there is none or its
/// tag does not match (a producer's header, or one copied from another command).
pub fn sealed_attempts(properties: &BasicProperties, body: &[u8], key: &[u8]) -> u32 {
    let Some(AMQPValue::LongString(value)) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(SEALED_ATTEMPTS))
    else {
        return 0;
    };
    let value = value.as_bytes();
    let Some(colon) = value.iter().position(|&b| b == b':') else {
        return 0;
    };
    let (count, tag) = (&value[..colon], &value[colon + 1..]);
    let Some(n) = std::str::from_utf8(count)
        .ok()
        .filter(|c| c.len() <= 4 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u32>().ok())
    else {
        return 0;
    };
    let Ok(tag) = hex::decode(tag) else { return 0 };
    if tag.len() != TAG_BYTES {
        return 0;
    }
    // verify_truncated_left compares in constant time.
    match mac(n, body, key).verify_truncated_left(&tag) {
        Ok(()) => n,
        Err(_) => 0,
    }
}

/// The [`SEALED_ATTEMPTS`] value for `n` attempts of the command `body`.
pub fn seal(n: u32, body: &[u8], key: &[u8]) -> AMQPValue {
    let tag = mac(n, body, key).finalize().into_bytes();
    text(&format!("{n}:{}", hex::encode(&tag[..TAG_BYTES])))
}

fn mac(n: u32, body: &[u8], key: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    // The prefix keeps these tags apart from anything else ever computed with the sign key.
    mac.update(b"weibo-relay attempts v1\n");
    mac.update(n.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The `x-attempts` header, for display: 0 when absent or not a number.
pub fn shown_attempts(properties: &BasicProperties) -> u32 {
    let Some(value) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS))
    else {
        return 0;
    };
    let n: i128 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        AMQPValue::LongString(s) => s.to_string().parse().unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The headers for the command's next queue: the producer's trace context when it is
/// well-formed, then `changes` (`None` removes a header). Nothing else of the producer's travels.
pub fn carried(properties: &BasicProperties, changes: &[(&str, Option<AMQPValue>)]) -> FieldTable {
    let mut table = std::collections::BTreeMap::new();
    // The producer's own context, as it was: a valid traceparent, and its tracestate within
    // the W3C limits; anything else a producer set is dropped.
    if let Some(trace) = crate::trace::TraceContext::from_amqp(properties) {
        let mut headers = FieldTable::default();
        trace.write(&mut headers);
        for (key, value) in headers.inner() {
            table.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in changes {
        match value {
            Some(value) => table.insert((*key).into(), value.clone()),
            None => table.remove(*key),
        };
    }
    FieldTable::from(table)
}

/// A number header.
pub fn number(n: u32) -> AMQPValue {
    AMQPValue::LongLongInt(n.into())
}

/// A text header.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The `x-last-code` change: the code as text, or no header at all when none was read.
pub fn last_code(code: Option<i64>) -> Option<AMQPValue> {
    code.map(|c| text(&c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"merchant-sign-key-0123456789";

    fn with(key: &str, v: AMQPValue) -> BasicProperties {
        let mut t = FieldTable::default();
        t.insert(key.into(), v);
        BasicProperties::default().with_headers(t)
    }

    #[test]
    fn only_a_count_the_relay_sealed_for_this_body_is_believed() {
        let body = br#"{"appid":"100023","sub_order_id":"42","action":"finish"}"#;
        let sealed = with(SEALED_ATTEMPTS, seal(3, body, KEY));
        assert_eq!(sealed_attempts(&sealed, body, KEY), 3);
        // Another body, another key, a producer's own header, garbage: all count as fresh.
        assert_eq!(sealed_attempts(&sealed, b"{}", KEY), 0);
        assert_eq!(sealed_attempts(&sealed, body, b"another-key-0123456789"), 0);
        assert_eq!(sealed_attempts(&BasicProperties::default(), body, KEY), 0);
        for forged in [
            text("4294967295"),
            text("4294967295:00"),
            text("7:zz"),
            text(&format!("7:{}", "0".repeat(32))),
            AMQPValue::LongLongInt(4_294_967_295),
            text(":"),
            text("99999999999999999999:00"),
        ] {
            assert_eq!(
                sealed_attempts(&with(SEALED_ATTEMPTS, forged.clone()), body, KEY),
                0,
                "{forged:?}"
            );
        }
        // A producer's x-attempts is only shown, never acted on.
        let producer = with(ATTEMPTS, AMQPValue::LongLongInt(4_294_967_295));
        assert_eq!(sealed_attempts(&producer, body, KEY), 0);
        assert_eq!(shown_attempts(&producer), u32::MAX);
        assert_eq!(shown_attempts(&with(ATTEMPTS, text("5"))), 5);
        assert_eq!(
            shown_attempts(&with(ATTEMPTS, AMQPValue::LongLongInt(-4))),
            0
        );
    }

    #[test]
    fn only_a_bounded_trace_context_is_carried_on() {
        let mut t = FieldTable::default();
        t.insert("x-death".into(), text("history"));
        t.insert("x-huge".into(), text(&"x".repeat(100_000)));
        t.insert(
            "traceparent".into(),
            text("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        t.insert("tracestate".into(), text(&"y".repeat(513)));
        t.insert(ATTEMPTS.into(), number(1));
        let props = BasicProperties::default().with_headers(t);
        let out = carried(&props, &[(ATTEMPTS, Some(number(2))), (LAST_CODE, None)]);
        let inner = out.inner();
        assert_eq!(
            inner.get("traceparent"),
            Some(&text(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ))
        );
        assert_eq!(inner.get(ATTEMPTS), Some(&number(2)));
        assert_eq!(inner.len(), 2, "{inner:?}");

        // An invalid traceparent (upper case) is not carried, nor a state without a parent.
        let mut t = FieldTable::default();
        t.insert(
            "traceparent".into(),
            text("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
        );
        t.insert("tracestate".into(), text("congo=1"));
        let out = carried(&BasicProperties::default().with_headers(t), &[]);
        assert!(out.inner().is_empty(), "{out:?}");
    }
}
