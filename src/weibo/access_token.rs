//! The merchant access_token (platform spec section 3): the answer and its secret.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// One access_token as the platform issued it. Debug shows everything but the token.
#[derive(Clone)]
pub struct Token {
    access_token: SecretString,
    issued_at: i64,
    expires_in: Duration,
    obtained_at: Instant,
}

impl Token {
    /// A token whose request was sent at `obtained_at` (so its life is never overestimated).
    pub fn new(
        access_token: SecretString,
        issued_at: i64,
        expires_in: Duration,
        obtained_at: Instant,
    ) -> Self {
        Self {
            access_token,
            issued_at,
            expires_in,
            obtained_at,
        }
    }

    /// The token itself; expose it only where it is put into a request.
    pub fn secret(&self) -> &SecretString {
        &self.access_token
    }

    /// The platform's `issued_at`, unix seconds by the platform's clock.
    pub fn issued_at(&self) -> i64 {
        self.issued_at
    }

    /// The platform's `expires_in`.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When (local monotonic clock) the request that obtained it was sent.
    pub fn obtained_at(&self) -> Instant {
        self.obtained_at
    }

    /// True when both hold the same access_token (compared in constant time).
    pub fn same_token(&self, other: &Token) -> bool {
        let a = self.access_token.expose_secret().as_bytes();
        let b = other.access_token.expose_secret().as_bytes();
        a.ct_eq(b).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why no token was obtained. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No answer: connection refused, time-out, TLS.
    #[error("token request failed: {0}")]
    Transport(String),
    /// The platform answered with an error code.
    #[error("token request refused: HTTP {status}, code {code:?}: {msg}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The platform's error code, if it sent one.
        code: Option<i64>,
        /// The platform's message.
        msg: String,
    },
    /// The answer is not a token.
    #[error("token answer unreadable: {0}")]
    Malformed(String),
}

/// `{"client_id":..,"uid":..,"access_token":..,"issued_at":..,"expires_in":..}`; `client_id`
/// and `uid` (number or string) are not needed, so they are not read.
#[derive(Deserialize)]
struct Answer {
    access_token: SecretString,
    #[serde(default)]
    issued_at: Option<i64>,
    expires_in: u64,
}

/// Turns the authorize answer into a [`Token`] obtained at `obtained_at`.
pub(crate) fn parse_token_answer(
    status: u16,
    body: &[u8],
    obtained_at: Instant,
) -> Result<Token, TokenError> {
    if (200..300).contains(&status) {
        if let Ok(answer) = serde_json::from_slice::<Answer>(body) {
            if answer.access_token.expose_secret().is_empty() || answer.expires_in == 0 {
                return Err(TokenError::Malformed(
                    "empty access_token or zero expires_in".into(),
                ));
            }
            return Ok(Token::new(
                answer.access_token,
                answer.issued_at.unwrap_or_default(),
                Duration::from_secs(answer.expires_in),
                obtained_at,
            ));
        }
    }
    // Any of the platform's envelopes (the OAuth2 error most likely), at any status.
    match super::read_code(body) {
        Some(error) => Err(TokenError::Refused {
            status,
            code: Some(error.code),
            msg: crate::telemetry::shown(&error.msg),
        }),
        None if !(200..300).contains(&status) => Err(TokenError::Refused {
            status,
            code: None,
            msg: "no platform answer".into(),
        }),
        // Never echo a 2xx body: it may hold a token in an unexpected shape.
        None => Err(TokenError::Malformed(format!(
            "HTTP {status}: not a token answer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uid_as_number_or_string() {
        let now = Instant::now();
        for body in [
            r#"{"client_id":"772915","uid":1404376560,"access_token":"2.00abc","issued_at":1655101652,"expires_in":7200}"#,
            r#"{"client_id":"772915","uid":"1404376560","access_token":"2.00abc","issued_at":1655101652,"expires_in":7200}"#,
        ] {
            let t = parse_token_answer(200, body.as_bytes(), now).unwrap();
            assert_eq!(t.secret().expose_secret(), "2.00abc");
            assert_eq!(t.issued_at(), 1655101652);
            assert_eq!(t.expires_in(), Duration::from_secs(7200));
        }
    }

    #[tokio::test]
    async fn debug_redacts_the_token() {
        let t = Token::new(
            SecretString::from("2.00secret"),
            1,
            Duration::from_secs(7200),
            Instant::now(),
        );
        let shown = format!("{t:?}");
        assert!(!shown.contains("2.00secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[tokio::test]
    async fn errors_are_classified() {
        let now = Instant::now();
        assert!(matches!(
            parse_token_answer(400, br#"{"code":40001,"msg":"bad sign"}"#, now),
            Err(TokenError::Refused {
                status: 400,
                code: Some(40001),
                ..
            })
        ));
        assert!(matches!(
            parse_token_answer(403, br#"{"error_code":21301,"error":"auth faild"}"#, now),
            Err(TokenError::Refused {
                code: Some(21301),
                ..
            })
        ));
        assert!(matches!(
            parse_token_answer(502, b"<html>", now),
            Err(TokenError::Refused {
                status: 502,
                code: None,
                ..
            })
        ));
        let err = parse_token_answer(200, br#"{"token":"2.00leak"}"#, now).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)));
        assert!(!err.to_string().contains("2.00leak"));
    }
}
