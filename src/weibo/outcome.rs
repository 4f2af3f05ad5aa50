//! Classifying a platform answer (platform spec section 4, its code table).

use reqwest::StatusCode;
use serde::Deserialize;

/// The two order actions the relay reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `retailerFinishSub`: the merchant performed the sub order.
    Finish,
    /// `retailerCloseSub`: the merchant could not perform it.
    Close,
}

impl Action {
    /// The interface name, the last path segment under `{api_base}/order/`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Finish => "retailerFinishSub",
            Self::Close => "retailerCloseSub",
        }
    }
}

/// What a caller does next after one platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Done: `code` is 0, or the idempotent "already in the wanted state" code.
    Succeeded {
        /// 0, 70102 (finish) or 70103 (close).
        code: i64,
    },
    /// The access_token expired (21327) or was invalidated (21332): refresh once, retry.
    TokenRejected {
        /// 21327 or 21332.
        code: i64,
    },
    /// Try again later: HTTP 5xx, time-out, connection error, rate limiting.
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

/// Codes that mean the token must be refreshed.
pub const TOKEN_CODES: [i64; 2] = [21327, 21332];
/// Codes that mean "slow down".
pub const RATE_LIMIT_CODES: [i64; 2] = [10023, 10024];
/// Sub order already finished.
pub const ALREADY_FINISHED: i64 = 70102;
/// Sub order already closed.
pub const ALREADY_CLOSED: i64 = 70103;

/// The answer envelope `{"code":..,"msg":..,"data":..}`; `code` may come as a string.
#[derive(Debug, Deserialize)]
struct Answer {
    code: Code,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Code {
    Int(i64),
    Text(String),
}

impl Code {
    fn value(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// Reads an answer's `code` and `msg`, if the body is the platform's JSON envelope.
pub(crate) fn parse_answer(body: &[u8]) -> Option<(i64, String)> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    Some((answer.code.value()?, answer.msg.unwrap_or_default()))
}

/// Applies the spec's table to one HTTP answer.
pub fn classify(action: Action, status: StatusCode, body: &[u8]) -> CallOutcome {
    let parsed = parse_answer(body);
    if status.is_redirection() {
        // Never followed (the client refuses redirects): the platform did not settle the call.
        return CallOutcome::Transient {
            code: None,
            reason: format!("HTTP {} redirect not followed", status.as_u16()),
        };
    }
    if status.is_server_error() {
        // Whatever the body says, a 5xx means the platform did not settle the call.
        return CallOutcome::Transient {
            code: parsed.map(|(code, _)| code),
            reason: format!("HTTP {}", status.as_u16()),
        };
    }
    let Some((code, msg)) = parsed else {
        // A gateway's own page (no platform envelope): only throttling and time-outs are
        // worth retrying; anything else would fail the same way again.
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
    match (code, action) {
        (0, _) | (ALREADY_FINISHED, Action::Finish) | (ALREADY_CLOSED, Action::Close) => {
            CallOutcome::Succeeded { code }
        }
        (c, _) if TOKEN_CODES.contains(&c) => CallOutcome::TokenRejected { code },
        (c, _) if RATE_LIMIT_CODES.contains(&c) => CallOutcome::Transient {
            code: Some(code),
            reason: format!("rate limited: {msg}"),
        },
        // 40001, 40002, 70101, 70104, the non-idempotent 70102/70103, and codes the spec
        // does not list: retrying the same request cannot change the answer.
        _ => CallOutcome::Permanent {
            code: Some(code),
            msg,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: i64) -> Vec<u8> {
        format!(r#"{{"code":{code},"msg":"m","data":{{}}}}"#).into_bytes()
    }

    #[test]
    fn every_table_row() {
        use Action::*;
        let ok = StatusCode::OK;
        for action in [Finish, Close] {
            assert_eq!(
                classify(action, ok, &answer(0)),
                CallOutcome::Succeeded { code: 0 }
            );
            for code in TOKEN_CODES {
                assert_eq!(
                    classify(action, StatusCode::UNAUTHORIZED, &answer(code)),
                    CallOutcome::TokenRejected { code }
                );
            }
            for code in RATE_LIMIT_CODES {
                assert!(matches!(
                    classify(action, StatusCode::TOO_MANY_REQUESTS, &answer(code)),
                    CallOutcome::Transient { code: Some(c), .. } if c == code
                ));
            }
            for code in [40001, 40002, 70101, 70104, 12345] {
                assert_eq!(
                    classify(action, ok, &answer(code)),
                    CallOutcome::Permanent {
                        code: Some(code),
                        msg: "m".into()
                    }
                );
            }
        }
        assert_eq!(
            classify(Finish, ok, &answer(70102)),
            CallOutcome::Succeeded { code: 70102 }
        );
        assert!(matches!(
            classify(Close, ok, &answer(70102)),
            CallOutcome::Permanent {
                code: Some(70102),
                ..
            }
        ));
        assert_eq!(
            classify(Close, ok, &answer(70103)),
            CallOutcome::Succeeded { code: 70103 }
        );
        assert!(matches!(
            classify(Finish, ok, &answer(70103)),
            CallOutcome::Permanent {
                code: Some(70103),
                ..
            }
        ));
    }

    #[test]
    fn server_errors_are_transient_whatever_the_body() {
        let s = StatusCode::BAD_GATEWAY;
        assert!(matches!(
            classify(Action::Finish, s, b"<html>bad gateway</html>"),
            CallOutcome::Transient { code: None, .. }
        ));
        assert!(matches!(
            classify(Action::Finish, s, &answer(70101)),
            CallOutcome::Transient {
                code: Some(70101),
                ..
            }
        ));
    }

    #[test]
    fn unreadable_answers() {
        assert!(matches!(
            classify(Action::Close, StatusCode::OK, b"not json"),
            CallOutcome::Permanent { code: None, .. }
        ));
        assert!(matches!(
            classify(Action::Close, StatusCode::TOO_MANY_REQUESTS, b""),
            CallOutcome::Transient { code: None, .. }
        ));
        assert_eq!(
            classify(
                Action::Close,
                StatusCode::OK,
                br#"{"code":"0","msg":"success"}"#
            ),
            CallOutcome::Succeeded { code: 0 }
        );
    }
}
