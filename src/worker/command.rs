//! A fulfilment command as the merchant's consumers put it on the queue (contract, AMQP).

use serde::{Deserialize, Serialize, Serializer};

use crate::ids::{AppId, StringOrNumber, SubOrderId};
use crate::provider::domain::{MerchantName, MerchantRef, Uid};
use crate::telemetry::clip;

/// Largest command body read; a command is a few dozen bytes.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest close reason passed to the platform.
const MAX_REASON_CHARS: usize = 1000;
/// Longest parser message repeated in `x-death-reason`.
const MAX_ERROR_CHARS: usize = 200;

/// What the merchant reports for one sub order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: `retailerFinishSub`.
    Finish,
    /// Could not deliver: `retailerCloseSub` with the reason.
    Close {
        /// Why, as the buyer will see it.
        reason: String,
    },
    /// Any catalogue interface (the gateway's durable door, docs/platform-gateway.md).
    Call(Box<InterfaceCommand>),
}

/// An `"action":"call"` command: which interface, with what, under the client's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCommand {
    /// `<group>/<name>`, checked against the catalogue when admitted.
    pub interface: String,
    /// The parameters as the client wrote them (the outcome repeats them).
    pub raw_params: serde_json::Map<String, serde_json::Value>,
    /// The same, as the platform gets them.
    pub params: Vec<(String, String)>,
    /// The client's id for it, repeated in the outcome.
    pub id: String,
}

/// A parsed, well-formed command; the only way to build one is [`Command::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    appid: AppId,
    /// Present for finish and close, absent for a call.
    sub_order_id: Option<SubOrderId>,
    verdict: Verdict,
    /// Provider mode: the merchant whose token the call uses (`appid` is the provider's),
    /// by `merchant_ref`, `uid` or both. Boxed: a command travels inside every decision, and
    /// most have none.
    merchant: Option<Box<MerchantName>>,
}

#[derive(Deserialize)]
struct Raw {
    appid: StringOrNumber,
    #[serde(default)]
    sub_order_id: Option<StringOrNumber>,
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    merchant_ref: Option<String>,
    #[serde(default)]
    uid: Option<StringOrNumber>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    id: Option<StringOrNumber>,
}

/// Longest client id of a call command.
const MAX_ID_CHARS: usize = 128;
/// Most parameters of a call command.
const MAX_CALL_PARAMS: usize = 1000;

impl Command {
    /// Reads a command body; the error says what is wrong, for `x-death-reason`.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_COMMAND_BYTES {
            return Err(format!(
                "malformed command: {} bytes, more than {MAX_COMMAND_BYTES}",
                body.len()
            ));
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            // serde repeats pieces of the input in its messages: cut and escape them.
            format!(
                "malformed command: {}",
                clip(&e.to_string(), MAX_ERROR_CHARS)
            )
        })?;
        // Both end up in log lines and platform requests: printable ASCII only, bounded.
        let appid = AppId::parse(&raw.appid.into_text())
            .ok_or_else(|| format!("malformed command: {}", AppId::RULE))?;
        let merchant_ref = match raw.merchant_ref {
            None => None,
            Some(text) => Some(MerchantRef::parse(&text).ok_or_else(|| {
                format!(
                    "malformed command: merchant_ref {} is not 1 to 64 letters, digits, '-', '_' or '.'",
                    crate::telemetry::shown(&text)
                )
            })?),
        };
        let uid = match raw.uid {
            None => None,
            Some(uid) => {
                let text = uid.into_text();
                Some(Uid::parse(&text).ok_or_else(|| {
                    format!(
                        "malformed command: uid {} is not 1 to 20 digits",
                        crate::telemetry::shown(&text)
                    )
                })?)
            }
        };
        let merchant = MerchantName::of(merchant_ref, uid).map(Box::new);
        if raw.action == "call" {
            let call = Self::call(raw.interface, raw.params, raw.id)?;
            return Ok(Self {
                appid,
                sub_order_id: None,
                verdict: Verdict::Call(Box::new(call)),
                merchant,
            });
        }
        let sub_order_id = raw
            .sub_order_id
            .and_then(|id| SubOrderId::parse(&id.into_text()))
            .ok_or_else(|| format!("malformed command: {}", SubOrderId::RULE))?;
        let verdict = match (raw.action.as_str(), raw.reason) {
            ("finish", _) => Verdict::Finish,
            ("close", Some(reason)) if reason.chars().count() > MAX_REASON_CHARS => {
                return Err(format!(
                    "malformed command: reason longer than {MAX_REASON_CHARS} characters"
                ))
            }
            ("close", Some(reason)) if !reason.trim().is_empty() => Verdict::Close { reason },
            ("close", _) => return Err("malformed command: close needs a non-empty reason".into()),
            (other, _) => {
                return Err(format!(
                    "malformed command: action {} is neither finish, close nor call",
                    crate::telemetry::shown(other)
                ))
            }
        };
        let sub_order_id = Some(sub_order_id);
        Ok(Self {
            appid,
            sub_order_id,
            verdict,
            merchant,
        })
    }

    /// A call command's parts, checked as the gateway checks a request's.
    fn call(
        interface: Option<String>,
        params: Option<serde_json::Map<String, serde_json::Value>>,
        id: Option<StringOrNumber>,
    ) -> Result<InterfaceCommand, String> {
        let interface = interface
            .filter(|i| crate::settings::is_interface_name(i))
            .ok_or("malformed command: call needs an interface, <group>/<name>")?;
        let id = id
            .map(StringOrNumber::into_text)
            .filter(|id| {
                !id.is_empty()
                    && id.chars().count() <= MAX_ID_CHARS
                    && id.chars().all(|c| c.is_ascii_graphic())
            })
            .ok_or_else(|| {
                format!("malformed command: call needs an id, 1 to {MAX_ID_CHARS} printable ASCII characters")
            })?;
        let raw_params = params.unwrap_or_default();
        let checked = crate::gateway::params_text(raw_params.clone(), MAX_CALL_PARAMS)
            .map_err(|e| format!("malformed command: {e}"))?;
        Ok(InterfaceCommand {
            interface,
            raw_params,
            params: checked,
            id,
        })
    }

    /// A command built in code, for the decision table's tests.
    #[cfg(test)]
    pub(crate) fn new(appid: &str, sub_order_id: &str, verdict: Verdict) -> Self {
        Self {
            appid: AppId::parse(appid).expect("test appid"),
            sub_order_id: Some(SubOrderId::parse(sub_order_id).expect("test sub order")),
            verdict,
            merchant: None,
        }
    }

    /// The merchant.
    pub fn appid(&self) -> &AppId {
        &self.appid
    }

    /// Provider mode: the merchant the command is for, as it named it.
    pub fn merchant(&self) -> Option<&MerchantName> {
        self.merchant.as_deref()
    }

    /// The sub order, for finish and close.
    pub fn sub_order_id(&self) -> Option<&SubOrderId> {
        self.sub_order_id.as_ref()
    }

    /// Finish or close.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The platform action this command asks for; a call is classified as the order list
    /// is (no code means "already done" for it).
    pub fn action(&self) -> crate::weibo::Action {
        match self.verdict {
            Verdict::Finish => crate::weibo::Action::Finish,
            Verdict::Close { .. } => crate::weibo::Action::Close,
            Verdict::Call(_) => crate::weibo::Action::List,
        }
    }

    /// `finish`, `close` or `call`.
    pub fn action_name(&self) -> &'static str {
        match self.verdict {
            Verdict::Call(_) => "call",
            _ => self.action().label(),
        }
    }
}

/// The command in its queue shape (as an outcome carries it).
impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            appid: &'a AppId,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub_order_id: Option<&'a SubOrderId>,
            action: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            interface: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            params: Option<&'a serde_json::Map<String, serde_json::Value>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            merchant_ref: Option<&'a MerchantRef>,
            #[serde(skip_serializing_if = "Option::is_none")]
            uid: Option<&'a Uid>,
        }
        let (reason, call) = match &self.verdict {
            Verdict::Finish => (None, None),
            Verdict::Close { reason } => (Some(reason.as_str()), None),
            Verdict::Call(call) => (None, Some(call)),
        };
        Shape {
            appid: &self.appid,
            sub_order_id: self.sub_order_id.as_ref(),
            action: self.action_name(),
            reason,
            interface: call.map(|c| c.interface.as_str()),
            params: call.map(|c| &c.raw_params),
            id: call.map(|c| c.id.as_str()),
            merchant_ref: self.merchant().and_then(MerchantName::merchant_ref),
            uid: self.merchant().and_then(MerchantName::uid),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests;
