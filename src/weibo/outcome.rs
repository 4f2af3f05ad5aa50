//! Classifying a platform answer (platform spec section 4): the code is read from whichever of
//! the platform's three envelopes arrives, at any HTTP status, and looked up in the configured
//! code table.

use reqwest::StatusCode;
use serde_json::Value;

use crate::settings::{CodeMeaning, CodeTable};

/// The two order actions the relay reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `retailerFinishSub`: the merchant performed the sub order.
    Finish,
    /// `retailerCloseSub`: the merchant could not perform it.
    Close,
    /// `retailerGetSubList`: the sub orders changed in a time range (reconciliation).
    List,
}

impl Action {
    /// The `action` metric label (and the command's `action`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Finish => "finish",
            Self::Close => "close",
            Self::List => "list",
        }
    }

    /// The interface name, the last path segment under `{api_base}/order/`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Finish => "retailerFinishSub",
            Self::Close => "retailerCloseSub",
            Self::List => "retailerGetSubList",
        }
    }
}

/// What a caller does next after one platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Done: `code` is 0, or a code the table says means "already in the wanted state".
    Succeeded {
        /// 0 or the idempotent code.
        code: i64,
    },
    /// The access_token was rejected (expired, superseded): refresh once, retry.
    TokenRejected {
        /// The platform's code.
        code: i64,
    },
    /// Try again later: HTTP 5xx, time-out, connection error, a transient code.
    Transient {
        /// The platform code when an answer could be read.
        code: Option<i64>,
        /// Why, for logs and the outcome message.
        reason: String,
    },
    /// Retrying cannot help.
    Permanent {
        /// The platform code, or `None` when the answer carried none.
        code: Option<i64>,
        /// The platform's message or what was wrong with the answer.
        msg: String,
    },
}

/// Longest piece of the platform's message a log line repeats.
const SHOWN_MSG_CHARS: usize = 200;

impl std::fmt::Display for CallOutcome {
    /// One line for a log: what happened, and the platform's reason, escaped and cut to 200
    /// characters (the platform's text could hold a newline, an escape sequence, 4 MiB).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &str| crate::telemetry::clip(text, SHOWN_MSG_CHARS);
        match self {
            Self::Succeeded { code } => write!(f, "succeeded (code {code})"),
            Self::TokenRejected { code } => write!(f, "access_token rejected (code {code})"),
            Self::Transient { reason, .. } => write!(f, "transient failure: {}", shown(reason)),
            Self::Permanent {
                code: Some(code),
                msg,
            } => {
                write!(f, "permanent failure (code {code}): {}", shown(msg))
            }
            Self::Permanent { code: None, msg } => {
                write!(f, "permanent failure: {}", shown(msg))
            }
        }
    }
}

/// A code and message read from any of the three envelopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformError {
    /// The code (`code` or `error_code`, number or numeric string).
    pub code: i64,
    /// `msg`, `error_description` or `error`.
    pub msg: String,
}

fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Reads the code and message of an answer: the e-commerce envelope (`code`/`msg`), Weibo's
/// API gateway error (`error_code`/`error`/`request`) or the OAuth2 error
/// (`error`/`error_code`/`error_description`). `None` when the body carries no code.
pub fn read_code(body: &[u8]) -> Option<PlatformError> {
    // An object only: serde would read a struct out of a JSON array too.
    let envelope: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    if let Some(code) = envelope.get("code").and_then(number) {
        return Some(PlatformError {
            code,
            msg: text(envelope.get("msg")).unwrap_or_default(),
        });
    }
    let code = envelope.get("error_code").and_then(number)?;
    let msg = text(envelope.get("error_description"))
        .or_else(|| text(envelope.get("error")))
        .unwrap_or_default();
    Some(PlatformError { code, msg })
}

/// Applies the code table to one HTTP answer.
pub fn classify(action: Action, status: StatusCode, body: &[u8], table: &CodeTable) -> CallOutcome {
    if status.is_redirection() {
        // Never followed (the client refuses redirects): the platform did not settle the call.
        return CallOutcome::Transient {
            code: None,
            reason: format!("HTTP {} redirect not followed", status.as_u16()),
        };
    }
    let read = read_code(body);
    if status.is_server_error() {
        // Whatever the body says, a 5xx means the platform did not settle the call.
        return CallOutcome::Transient {
            code: read.map(|e| e.code),
            reason: format!("HTTP {}", status.as_u16()),
        };
    }
    let Some(PlatformError { code, msg }) = read else {
        // A page without any envelope: only throttling and time-outs are worth retrying;
        // anything else would fail the same way again.
        return if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
            CallOutcome::Transient {
                code: None,
                reason: format!("HTTP {} without a platform answer", status.as_u16()),
            }
        } else {
            CallOutcome::Permanent {
                code: None,
                msg: format!("HTTP {}: unreadable answer", status.as_u16()),
            }
        };
    };
    if code == 0 {
        return if status.is_success() {
            CallOutcome::Succeeded { code }
        } else {
            CallOutcome::Permanent {
                code: Some(code),
                msg: format!("HTTP {} with code 0: {msg}", status.as_u16()),
            }
        };
    }
    // Every code the table does not list, and the other action's idempotent code: retrying
    // the same request cannot change the answer.
    let permanent = |msg: String| CallOutcome::Permanent {
        code: Some(code),
        msg,
    };
    let Some(meaning) = table.meaning(code) else {
        return permanent(msg);
    };
    match meaning {
        CodeMeaning::TokenRejected => CallOutcome::TokenRejected { code },
        CodeMeaning::Transient => CallOutcome::Transient {
            code: Some(code),
            reason: format!("code {code}: {msg}"),
        },
        CodeMeaning::AlreadyFinished if action == Action::Finish => CallOutcome::Succeeded { code },
        CodeMeaning::AlreadyClosed if action == Action::Close => CallOutcome::Succeeded { code },
        CodeMeaning::AlreadyFinished | CodeMeaning::AlreadyClosed => permanent(msg),
    }
}

#[cfg(test)]
mod tests;
