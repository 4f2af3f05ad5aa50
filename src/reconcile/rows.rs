//! What a sweep takes from the platform's order list and from the event log: an order
//! state, checked, before anything is published or remembered.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::metrics::RowRefusal;
use crate::event::{state_word, EventId};
use crate::ids::{AppId, SubOrderId};
use crate::metrics::Label;
use crate::telemetry::shown;

/// A row of the order list larger than this is refused unread. A real row is under 1 KB
/// (the push content's fields plus `update_time`); this leaves room for long SKU lists.
pub const MAX_ROW_BYTES: usize = 16 * 1024;

/// An order state as a 128-bit digest of (appid, sub_order_id, state_code): what a sweep
/// remembers of each state in the log, 16 bytes whatever the ids' lengths.
pub type StateKey = u128;

/// A row of the list that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// What a fulfilment command may name.
    pub sub_order_id: SubOrderId,
    /// An integer or a plain token (one routing-key word).
    pub state_code: String,
    /// The row, published as the event's `data`.
    pub row: Value,
}

impl Listed {
    /// The state's key.
    pub fn key(&self, appid: &AppId) -> StateKey {
        key(appid, &self.sub_order_id, &self.state_code)
    }
}

/// The key of a state; the reconciled event id's digest serves.
pub fn key(appid: &AppId, sub_order_id: &SubOrderId, state_code: &str) -> StateKey {
    EventId::reconciled(appid, sub_order_id, state_code).as_u128()
}

/// Checks one row: its size first (so a huge row is never parsed), then that it is an object
/// with a sub order id a command could name and a state code that is one routing-key word.
pub fn listed(raw: &RawValue) -> Result<Listed, (RowRefusal, String)> {
    let text = raw.get();
    if text.len() > MAX_ROW_BYTES {
        return Err((RowRefusal::Oversized, format!("{} bytes", text.len())));
    }
    let row: Value = serde_json::from_str(text)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| (RowRefusal::Malformed, shown(text)))?;
    let sub_order_id = match &row["sub_order_id"] {
        Value::String(s) => SubOrderId::parse(s),
        Value::Number(n) if n.is_u64() || n.is_i64() => SubOrderId::parse(&n.to_string()),
        _ => None,
    }
    .ok_or_else(|| (RowRefusal::BadSubOrderId, example(&row["sub_order_id"])))?;
    let state_code = state_word(&row["state_code"])
        .ok_or_else(|| (RowRefusal::BadStateCode, example(&row["state_code"])))?;
    Ok(Listed {
        sub_order_id,
        state_code,
        row,
    })
}

fn example(value: &Value) -> String {
    match value {
        Value::String(s) => shown(s),
        other => shown(&other.to_string()),
    }
}

/// The state an entry of the log tells of, from the fields of its envelope that name it:
/// nothing else of the body is built.
pub fn logged(appid: &AppId, envelope: &[u8]) -> Option<StateKey> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        sub_order_id: Value,
        #[serde(default)]
        state_code: Value,
    }
    let envelope: Envelope = serde_json::from_slice(envelope).ok()?;
    // A sub order no command could name is no state a listed row can be: none to match.
    let sub_order_id = match envelope.sub_order_id {
        Value::String(s) => SubOrderId::parse(&s),
        Value::Number(n) => SubOrderId::parse(&n.to_string()),
        _ => None,
    }?;
    Some(key(
        appid,
        &sub_order_id,
        &state_word(&envelope.state_code)?,
    ))
}

/// A page's rows as the platform wrote them, as one digest: the same rows again give the
/// same value.
pub fn fingerprint(rows: &[Box<RawValue>]) -> u128 {
    let mut hasher = Sha256::new();
    for row in rows {
        hasher.update((row.get().len() as u64).to_be_bytes());
        hasher.update(row.get().as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// The rows one sweep of a merchant refused: counted by reason, and the first example of
/// each kept (escaped, cut) for a single log line.
#[derive(Debug, Default)]
pub struct Refused {
    by_reason: BTreeMap<&'static str, (u64, String)>,
}

impl Refused {
    /// Notes one refused row.
    pub fn note(&mut self, reason: RowRefusal, example: String) {
        let entry = self
            .by_reason
            .entry(reason.as_str())
            .or_insert((0, example));
        entry.0 = entry.0.saturating_add(1);
    }

    /// How many rows were refused for each reason.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.by_reason.iter().map(|(r, (n, _))| (*r, *n))
    }

    /// Nothing refused.
    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty()
    }

    /// One line's worth: each reason, its count and its first example.
    pub fn summary(&self) -> String {
        self.by_reason
            .iter()
            .map(|(reason, (n, example))| format!("{n} {reason} (first: {example})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: &str) -> Box<RawValue> {
        RawValue::from_string(v.to_owned()).unwrap()
    }

    fn reason(v: &str) -> RowRefusal {
        listed(&raw(v)).unwrap_err().0
    }

    #[test]
    fn a_state_is_the_same_whether_pushed_or_listed_as_number_or_text() {
        let pushed = br#"{"event_id":"x","appid":"100023","type":2,"kind":"sub_order","sub_order_id":"366383890000352","state_code":201,"data":{}}"#;
        let row = listed(&raw(
            r#"{"sub_order_id":366383890000352,"state_code":"201"}"#,
        ))
        .unwrap();
        let id = |text: &str| AppId::parse(text).unwrap();
        assert_eq!(logged(&id("100023"), pushed), Some(row.key(&id("100023"))));
        assert_ne!(logged(&id("200046"), pushed), Some(row.key(&id("100023"))));
        assert_eq!(logged(&id("100023"), b"not json"), None);
        assert_eq!(
            logged(
                &id("1"),
                br#"{"appid":"1","sub_order_id":null,"state_code":1}"#
            ),
            None
        );
    }

    #[test]
    fn rows_a_command_could_not_name_or_a_routing_key_not_hold_are_refused() {
        assert_eq!(reason(r#"{"state_code":1}"#), RowRefusal::BadSubOrderId);
        assert_eq!(
            reason(r#"{"sub_order_id":"","state_code":1}"#),
            RowRefusal::BadSubOrderId
        );
        assert_eq!(
            reason(r#"{"sub_order_id":"a\u0000b","state_code":1}"#),
            RowRefusal::BadSubOrderId
        );
        assert_eq!(
            reason(r#"{"sub_order_id":"\u001b[31m","state_code":1}"#),
            RowRefusal::BadSubOrderId
        );
        assert_eq!(
            reason(&format!(
                r#"{{"sub_order_id":"{}","state_code":1}}"#,
                "9".repeat(65)
            )),
            RowRefusal::BadSubOrderId
        );
        assert_eq!(
            reason(r#"{"sub_order_id":"1","state_code":"2 01"}"#),
            RowRefusal::BadStateCode
        );
        assert_eq!(
            reason(r#"{"sub_order_id":"1","state_code":201.5}"#),
            RowRefusal::BadStateCode
        );
        assert_eq!(reason(r#"{"sub_order_id":"1"}"#), RowRefusal::BadStateCode);
        assert_eq!(reason(r#"[1,2]"#), RowRefusal::Malformed);
        let big = format!(
            r#"{{"sub_order_id":"{}","state_code":1}}"#,
            "9".repeat(200_000)
        );
        let (why, example) = listed(&raw(&big)).unwrap_err();
        assert_eq!(
            (why, example.as_str()),
            (RowRefusal::Oversized, "200034 bytes")
        );
        let ok = listed(&raw(
            r#"{"sub_order_id":"42","state_code":301,"update_time":"x"}"#,
        ))
        .unwrap();
        assert_eq!(
            (ok.sub_order_id.as_str(), ok.state_code.as_str()),
            ("42", "301")
        );
    }

    #[test]
    fn refusals_are_counted_by_reason_with_their_first_example_escaped() {
        let mut refused = Refused::default();
        assert!(refused.is_empty());
        for v in [
            r#"{"sub_order_id":"\u001b[2J","state_code":1}"#,
            r#"{"sub_order_id":"","state_code":1}"#,
        ] {
            let (why, example) = listed(&raw(v)).unwrap_err();
            refused.note(why, example);
        }
        assert_eq!(
            refused.counts().collect::<Vec<_>>(),
            [("bad_sub_order_id", 2)]
        );
        assert_eq!(
            refused.summary(),
            r#"2 bad_sub_order_id (first: "\u{1b}[2J")"#
        );
    }

    #[test]
    fn the_same_rows_give_the_same_fingerprint_and_others_another() {
        let rows = |v: &[&str]| -> Vec<Box<RawValue>> {
            v.iter()
                .map(|r| RawValue::from_string((*r).to_owned()).unwrap())
                .collect()
        };
        let a = fingerprint(&rows(&[r#"{"a":1}"#, r#"{"b":2}"#]));
        assert_eq!(a, fingerprint(&rows(&[r#"{"a":1}"#, r#"{"b":2}"#])));
        assert_ne!(a, fingerprint(&rows(&[r#"{"a":1,"b":2}"#])));
        assert_ne!(a, fingerprint(&rows(&[r#"{"b":2}"#, r#"{"a":1}"#])));
    }
}
