//! A push from the platform, from raw body to a verified event ready to publish.
//!
//! The types read as the pipeline does: [`Body`] parses into an [`UnverifiedPush`], and only
//! [`UnverifiedPush::verify`] produces a [`VerifiedPush`], so nothing unverified can reach
//! the broker by construction.

mod body;
mod dedup;
mod relay;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{Event, MerchantTag, Source};
use crate::ids::AppId;
use crate::settings::Merchants;
use crate::signature;
use crate::telemetry::clip;

pub use crate::event::{EventId, EventKind};
use crate::metrics::PushOutcome;
pub use body::{Body, ContentKind};
pub use relay::{PushRelay, Stored};

/// Why a push was refused; each maps to one HTTP answer and one metrics outcome.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The body or a required field cannot be read.
    #[error("malformed push: {0}")]
    Malformed(String),
    /// The `sign` does not match the parameters and the merchant's key.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is outside the accepted window.
    #[error("timestamp {timestamp} is more than {max_skew_secs}s away from now")]
    Stale {
        /// The timestamp sent.
        timestamp: i64,
        /// The window.
        max_skew_secs: u64,
    },
    /// No merchant with this appid is configured.
    #[error("unknown appid {0}")]
    UnknownMerchant(AppId),
    /// Provider mode: the push's merchant field names no authorized merchant.
    #[error("no authorized merchant has uid {0}")]
    UnknownUid(String),
    /// The body is larger than `http.max_body_bytes`.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// Not form-encoded nor JSON (or not UTF-8).
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// The client did not send its whole body in time.
    #[error("body not received in time")]
    BodyTimeout,
    /// The broker did not confirm the event: the platform must retry.
    #[error("event not stored: {0}")]
    NotStored(#[from] crate::amqp::PublishError),
}

impl PushError {
    /// The metrics outcome label of this refusal.
    pub fn outcome(&self) -> PushOutcome {
        match self {
            Self::Malformed(_) => PushOutcome::Malformed,
            Self::TooLarge(_) => PushOutcome::TooLarge,
            Self::UnsupportedMediaType(_) => PushOutcome::UnsupportedMediaType,
            Self::BodyTimeout => PushOutcome::BodyTimeout,
            Self::BadSignature => PushOutcome::BadSignature,
            Self::Stale { .. } => PushOutcome::Stale,
            Self::UnknownMerchant(_) => PushOutcome::UnknownMerchant,
            Self::UnknownUid(_) => PushOutcome::UnknownUid,
            Self::NotStored(_) => PushOutcome::BrokerUnavailable,
        }
    }
}

fn malformed(msg: impl Into<String>) -> PushError {
    PushError::Malformed(msg.into())
}

/// A push whose fields are readable but whose signature has not been checked.
#[derive(Debug)]
pub struct UnverifiedPush {
    fields: BTreeMap<String, String>,
    appid: AppId,
    type_code: i64,
    data: Value,
    timestamp: i64,
}

impl UnverifiedPush {
    /// Checks that every required field is present and well-formed.
    pub fn parse(body: Body) -> Result<Self, PushError> {
        let fields = body.into_fields();
        let required = |name: &str| {
            fields
                .get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| malformed(format!("missing {name}")))
        };
        let appid = AppId::parse(required("appid")?)
            .ok_or_else(|| malformed("appid is not a valid appid"))?;
        let type_code = required("type")?
            .parse::<i64>()
            .map_err(|_| malformed("type is not an integer"))?;
        let data = serde_json::from_str(required("data")?).map_err(|e| {
            malformed(format!(
                "data is not JSON: {}",
                clip(&e.to_string(), body::MAX_PARSER_MESSAGE)
            ))
        })?;
        let timestamp = required("timestamp")?
            .parse::<i64>()
            .map_err(|_| malformed("timestamp is not an integer"))?;
        required("sign")?;
        Ok(Self {
            fields,
            appid,
            type_code,
            data,
            timestamp,
        })
    }

    /// The appid the push claims to come for.
    pub fn appid(&self) -> &AppId {
        &self.appid
    }

    /// The business type.
    pub fn type_code(&self) -> i64 {
        self.type_code
    }

    /// Checks merchant, signature and timestamp window (in that order), at `now` unix seconds,
    /// a timestamp at most `max_skew` away.
    /// What comes out is what the signature covers and nothing else: the event id and the
    /// published params are built from the signed pairs, as the matching form signed them, so
    /// padding or unsigned extra fields can neither change the id nor reach the broker.
    pub fn verify(
        self,
        merchants: &Merchants,
        now: i64,
        max_skew: std::time::Duration,
    ) -> Result<VerifiedPush, PushError> {
        use secrecy::ExposeSecret;
        let merchant = merchants
            .get(self.appid.as_str())
            .ok_or_else(|| PushError::UnknownMerchant(self.appid.clone()))?;
        let pairs = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let form = signature::verify_form(
            pairs.clone(),
            merchant.sign_key().expose_secret(),
            &self.fields["sign"],
        )
        .ok_or(PushError::BadSignature)?;
        if now.abs_diff(self.timestamp) > max_skew.as_secs() {
            return Err(PushError::Stale {
                timestamp: self.timestamp,
                max_skew_secs: max_skew.as_secs(),
            });
        }
        // The signed pairs, moved out of the body's fields (a push's `data` is not copied).
        let params = signature::into_signed(self.fields, form);
        let value = |name: &str| params.get(name).map_or("", String::as_str);
        let event_id = EventId::derive(value("appid"), value("type"), value("data"));
        Ok(VerifiedPush {
            merchant: None,
            event_id,
            form,
            appid: self.appid,
            kind: EventKind::from_type(self.type_code),
            type_code: self.type_code,
            timestamp: self.timestamp,
            params,
            data: self.data,
        })
    }
}

/// A push that passed every check: it came from a configured merchant, unaltered, recently.
#[derive(Debug)]
pub struct VerifiedPush {
    merchant: Option<MerchantTag>,
    event_id: EventId,
    form: signature::Form,
    appid: AppId,
    kind: EventKind,
    type_code: i64,
    timestamp: i64,
    params: BTreeMap<String, String>,
    data: Value,
}

impl VerifiedPush {
    /// A signed field's value (fields outside the signature are not kept).
    pub fn signed(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Provider mode: the push names `merchant` (the caller resolved its signed uid).
    pub fn for_merchant(mut self, merchant: MerchantTag) -> Self {
        self.merchant = Some(merchant);
        self
    }

    /// The event's identity, equal across redeliveries.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    /// Which canonical form the signature matched.
    pub fn form(&self) -> signature::Form {
        self.form
    }

    /// The merchant.
    pub fn appid(&self) -> &AppId {
        &self.appid
    }

    /// `sub_order` or `type_<N>`.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }

    /// `data.sub_order_id` as a string, if present.
    pub fn sub_order_id(&self) -> Option<String> {
        match self.data.get("sub_order_id")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// `data.state_code` as sent when it is a number or a string, else null.
    pub fn state_code(&self) -> &Value {
        match self.data.get("state_code") {
            Some(v @ (Value::Number(_) | Value::String(_))) => v,
            _ => &Value::Null,
        }
    }

    /// The event this push tells of.
    pub fn event(&self) -> Event<'_> {
        Event {
            id: self.event_id,
            appid: &self.appid,
            type_code: self.type_code,
            kind: self.kind,
            sub_order_id: self.sub_order_id(),
            state_code: self.state_code(),
            timestamp: self.timestamp,
            params: &self.params,
            data: &self.data,
            source: Source::Push,
            merchant: self.merchant.as_ref(),
        }
    }

    /// `order.<kind>.<state_code>` (see [`Event::routing_key`]).
    pub fn routing_key(&self) -> String {
        self.event().routing_key()
    }

    /// The JSON body published to the broker.
    pub fn envelope(&self, received_at: std::time::SystemTime) -> Vec<u8> {
        self.event().envelope(received_at)
    }

    /// A personal field of `data` (phone, account), masked for logs.
    pub fn masked_data_field(&self, name: &str) -> Option<String> {
        match self.data.get(name)? {
            Value::String(s) => Some(crate::telemetry::mask(s)),
            Value::Number(n) => Some(crate::telemetry::mask(&n.to_string())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
