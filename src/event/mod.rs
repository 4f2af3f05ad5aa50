//! An order event as it reaches the broker, whichever way it was learnt: from a push, or from
//! reading the platform's order list back (reconciliation). Routing key, envelope and AMQP
//! properties are the contract's (AMQP section) for both.

mod id;
pub mod log;
pub mod replay;
pub mod seal;
pub mod tail;
pub mod topic;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use serde::Serialize;
use serde_json::Value;

pub use id::EventId;

use crate::ids::AppId;
use crate::keys::MerchantKeys;
use crate::metrics::Label;
use crate::trace::TraceContext;

/// Header naming where an event came from.
pub const SOURCE_HEADER: &str = "x-weibo-source";
/// Header naming the merchant.
pub const APPID_HEADER: &str = "x-weibo-appid";

/// The business kind of an event: `sub_order` for `type=2`, `type_<N>` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Where the relay learnt of an event: header `x-weibo-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Source {
    /// A push from the platform.
    Push,
    /// The platform's order list, read back because the push never arrived.
    Reconcile,
}

/// Header naming the merchant in provider mode (its merchant_ref).
pub const MERCHANT_HEADER: &str = "x-weibo-merchant";

/// Provider mode: the merchant an event is for, named by the push's signed uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantTag {
    /// The provider's name for the merchant.
    pub merchant_ref: String,
    /// Its Weibo uid.
    pub uid: String,
}

/// One event, borrowing what its source holds.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event's identity (`message_id`).
    pub id: EventId,
    /// The merchant.
    pub appid: &'a AppId,
    /// The platform's `type`.
    pub type_code: i64,
    /// `sub_order` or `type_<N>`.
    pub kind: EventKind,
    /// The sub order, when the data names one.
    pub sub_order_id: Option<String>,
    /// The data's state code (number or string), or null.
    pub state_code: &'a Value,
    /// The push's timestamp, or when reconciliation found the state (unix seconds).
    pub timestamp: i64,
    /// The signed push fields (none for reconciled events).
    pub params: &'a BTreeMap<String, String>,
    /// The content.
    pub data: &'a Value,
    /// Push or reconcile.
    pub source: Source,
    /// Provider mode: the merchant (none in self-developed mode).
    pub merchant: Option<&'a MerchantTag>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    event_id: String,
    appid: &'a AppId,
    #[serde(rename = "type")]
    type_code: i64,
    kind: String,
    sub_order_id: Option<&'a str>,
    state_code: &'a Value,
    timestamp: i64,
    received_at: String,
    params: &'a BTreeMap<String, String>,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    merchant_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

impl Event<'_> {
    /// `order.<kind>.<state_code>`; a state code that is not an integer or a plain token
    /// becomes `none`, so a value from the platform can never add routing-key words.
    pub fn routing_key(&self) -> String {
        let state = state_word(self.state_code).unwrap_or_else(|| "none".to_owned());
        format!("order.{}.{state}", self.kind)
    }

    /// The JSON body published to the broker.
    pub fn envelope(&self, received_at: SystemTime) -> Vec<u8> {
        let envelope = Envelope {
            event_id: self.id.to_string(),
            appid: self.appid,
            type_code: self.type_code,
            kind: self.kind.to_string(),
            sub_order_id: self.sub_order_id.as_deref(),
            state_code: self.state_code,
            timestamp: self.timestamp,
            // Now, always writable; the epoch rather than a panic should the clock be broken.
            received_at: crate::clock::rfc3339(received_at)
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned()),
            params: self.params,
            data: self.data,
            merchant_ref: self.merchant.map(|m| m.merchant_ref.as_str()),
            uid: self.merchant.map(|m| m.uid.as_str()),
        };
        serde_json::to_vec(&envelope).expect("an envelope of strings and JSON values serializes")
    }

    /// Everything published for this event: routing key, envelope and properties, sealed
    /// under `keys` (the event appid's) over exactly what goes out (see [`seal`]).
    pub fn publication(
        &self,
        received_at: SystemTime,
        trace: &TraceContext,
        keys: &MerchantKeys,
    ) -> Publication {
        let routing_key = self.routing_key();
        let body = self.envelope(received_at);
        let message_id = self.id.to_string();
        let timestamp = crate::clock::secs_of(received_at);
        let source = self.source.as_str();
        let mut headers = FieldTable::default();
        trace.write(&mut headers);
        headers.insert(
            APPID_HEADER.into(),
            AMQPValue::LongString(LongString::from(self.appid.as_str())),
        );
        if let Some(merchant) = self.merchant {
            headers.insert(
                MERCHANT_HEADER.into(),
                AMQPValue::LongString(LongString::from(merchant.merchant_ref.as_str())),
            );
        }
        headers.insert(
            SOURCE_HEADER.into(),
            AMQPValue::LongString(LongString::from(source)),
        );
        seal::Sealed {
            message_id: &message_id,
            routing_key: &routing_key,
            timestamp,
            appid: self.appid.as_str(),
            source,
            body: &body,
        }
        .write(keys, &mut headers);
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message_id.into())
            .with_type(self.kind.to_string().as_str().into())
            .with_timestamp(timestamp)
            .with_headers(headers);
        Publication {
            routing_key,
            body,
            properties,
        }
    }
}

/// An event ready to publish: persistent, JSON, `message_id` the event id, `type` the kind,
/// `timestamp` when it was received, headers naming the merchant and the source, the W3C
/// trace context naming the relay's hop as the parent, and the seal.
#[derive(Debug, Clone)]
pub struct Publication {
    /// `order.<kind>.<state_code>`.
    pub routing_key: String,
    /// The envelope.
    pub body: Vec<u8>,
    /// The AMQP properties and headers.
    pub properties: BasicProperties,
}

impl Publication {
    /// Publishes to `exchange` on `publisher` and waits for the confirm (see
    /// [`Publisher::publish`](crate::amqp::Publisher::publish)). The properties move into the
    /// message: cloning them, headers and all, was a map rebuilt per push.
    pub async fn publish_on(
        self,
        publisher: &crate::amqp::Publisher,
        exchange: &str,
    ) -> Result<std::time::Duration, crate::amqp::PublishError> {
        let Self {
            routing_key,
            body,
            properties,
        } = self;
        let outgoing = crate::amqp::Outgoing {
            exchange,
            routing_key: &routing_key,
            body: &body,
            properties,
        };
        publisher.publish(outgoing).await
    }
}

/// The largest envelope a push body of `max_body_bytes` can become, with room to spare:
/// JSON escaping makes at most six bytes of one (a raw control character in a form value),
/// and numbers re-written from `data` at most four (`1E15` as `1000000000000000.0`).
/// A reader of the log skips anything larger unread.
pub fn max_envelope_bytes(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(16).saturating_add(64 * 1024)
}

/// A state code as one routing-key word: an integer, or a plain token of at most 32
/// letters, digits, `_` and `-`; `None` for anything else (null, 201.5, text with dots,
/// spaces or control characters).
pub fn state_word(state_code: &Value) -> Option<String> {
    match state_code {
        // Integers only: 201.5 or 1e2 would print with a dot, another routing-key word.
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::String(s)
            if !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}
