//! Every answer of the gateway (contract table, docs/platform-gateway.md): a success, or one
//! [`GatewayError`] whose status, body and `relay` object follow from its variant.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Value};

/// The `relay` object of every answer: how many platform calls were made, and what the
/// outcome was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Relay {
    /// Calls made on the platform for this request.
    pub attempts: u32,
    /// `success`, `permanent`, `transient`, `unknown` or `refused` (never sent).
    pub outcome: &'static str,
}

/// A request the gateway did not bring to success, and why.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No `Authorization: Bearer` key, or one no client has.
    #[error("no or unknown client key")]
    Unauthorized,
    /// The interface or the appid is not allowed for this client.
    #[error("{0}")]
    Forbidden(String),
    /// Outside the catalogue and not configured.
    #[error("no such interface")]
    NotFound,
    /// Over `gateway.max_body_bytes`.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// Not `application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// Malformed, or a parameter the relay owns.
    #[error("{0}")]
    BadRequest(String),
    /// The body did not arrive in time.
    #[error("the body did not arrive in time")]
    BodyTimeout,
    /// Over the client's own rate.
    #[error("over this client's rate limit")]
    TooManyRequests,
    /// The platform refused for good (its code, message and data).
    #[error("the platform refused: {msg}")]
    Permanent {
        /// Calls made.
        attempts: u32,
        /// The platform's code.
        code: Option<i64>,
        /// Its message.
        msg: String,
        /// Its data.
        data: Value,
    },
    /// Not done: rate limited, platform unavailable, no token or permit within the wait.
    #[error("not done: {msg}")]
    Transient {
        /// Calls made.
        attempts: u32,
        /// The platform's code, when one was read.
        code: Option<i64>,
        /// Why.
        msg: String,
    },
    /// A write whose fate is unknown: it may have happened.
    #[error("unknown: {msg}")]
    Unknown {
        /// Calls made.
        attempts: u32,
        /// Why.
        msg: String,
    },
}

/// Seconds a caller waits before trying a `transient` answer again.
const RETRY_AFTER_SECS: u32 = 1;

impl GatewayError {
    /// The `relay` object of this answer.
    pub fn relay(&self) -> Relay {
        let (attempts, outcome) = match self {
            Self::Permanent { attempts, .. } => (*attempts, "permanent"),
            Self::Transient { attempts, .. } => (*attempts, "transient"),
            Self::Unknown { attempts, .. } => (*attempts, "unknown"),
            _ => (0, "refused"),
        };
        Relay { attempts, outcome }
    }

    /// The platform's code, when it answered one.
    pub fn platform_code(&self) -> Option<i64> {
        match self {
            Self::Permanent { code, .. } | Self::Transient { code, .. } => *code,
            _ => None,
        }
    }

    /// The answer's code when the platform gave none: the HTTP status times 100.
    fn own_code(&self) -> i64 {
        i64::from(self.status_code().as_u16()) * 100
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Permanent { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Transient { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unknown { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let relay = self.relay();
        let mut answer = HttpResponse::build(self.status_code());
        if matches!(self, Self::Transient { .. } | Self::TooManyRequests) {
            answer.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
        }
        if matches!(self, Self::Unauthorized) {
            answer.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let body = match self {
            Self::Permanent {
                code, msg, data, ..
            } => {
                json!({"code": code.unwrap_or(self.own_code()), "msg": msg, "data": data, "relay": relay})
            }
            Self::Transient { code, .. } => {
                json!({"code": code.unwrap_or(self.own_code()), "msg": self.to_string(), "relay": relay})
            }
            _ => json!({"code": self.own_code(), "msg": self.to_string(), "relay": relay}),
        };
        answer.json(body)
    }
}

/// The answer to a call the platform answered with code 0.
pub fn success(attempts: u32, code: i64, msg: Option<String>, data: Value) -> HttpResponse {
    let relay = Relay {
        attempts,
        outcome: "success",
    };
    HttpResponse::Ok()
        .json(json!({"code": code, "msg": msg.unwrap_or_default(), "data": data, "relay": relay}))
}
