//! What a verified push becomes on the broker: routing key and JSON envelope (contract, AMQP).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::VerifiedPush;

/// The business kind of an event: `sub_order` for `type=2`, `type_<N>` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A sub-order event (`type=2`).
    SubOrder,
    /// Any other type, passed on unchanged.
    Other(i64),
}

impl EventKind {
    /// The kind of a push `type`.
    pub fn from_type(type_code: i64) -> Self {
        if type_code == 2 {
            Self::SubOrder
        } else {
            Self::Other(type_code)
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubOrder => f.write_str("sub_order"),
            Self::Other(n) => write!(f, "type_{n}"),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    event_id: String,
    appid: &'a str,
    #[serde(rename = "type")]
    type_code: i64,
    kind: String,
    sub_order_id: Option<String>,
    state_code: &'a Value,
    timestamp: i64,
    received_at: String,
    params: &'a BTreeMap<String, String>,
    data: &'a Value,
}

impl VerifiedPush {
    /// `order.<kind>.<state_code>`; a state code that is not a plain token becomes `none`, so
    /// a value from the platform can never add routing-key words.
    pub fn routing_key(&self) -> String {
        let state = match self.state_code() {
            // Integers only: 201.5 or 1e2 would print with a dot, another routing-key word.
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            Value::String(s)
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                s.clone()
            }
            _ => "none".to_owned(),
        };
        format!("order.{}.{state}", self.kind)
    }

    /// The JSON body published to the broker.
    pub fn envelope(&self, received_at: SystemTime) -> Vec<u8> {
        let envelope = Envelope {
            event_id: self.event_id.to_string(),
            appid: self.appid.as_str(),
            type_code: self.type_code,
            kind: self.kind.to_string(),
            sub_order_id: self.sub_order_id(),
            state_code: self.state_code(),
            timestamp: self.timestamp,
            received_at: humantime::format_rfc3339_seconds(received_at).to_string(),
            params: &self.params,
            data: &self.data,
        };
        serde_json::to_vec(&envelope).expect("an envelope of strings and JSON values serializes")
    }
}
