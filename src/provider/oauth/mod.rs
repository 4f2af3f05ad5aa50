//! The platform's OAuth2 side as provider mode uses it (service-provider spec, section 1):
//! [`OAuthClient`] is the seam (tests and the refresher take any implementation), and
//! [`HttpOAuthClient`] speaks Weibo's `oauth2/access_token` (both grants),
//! `oauth2/get_token_info` and `oauth2/revokeoauth2`, with bounded answers, no redirects
//! followed and a deadline on every call.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::SecretString;

use super::domain::Uid;

mod http;

pub use http::HttpOAuthClient;

/// invalid_grant: the code or refresh token is dead (used, expired, revoked).
pub const INVALID_GRANT: i64 = 21325;
/// expired_token.
pub const EXPIRED_TOKEN: i64 = 21327;
/// invalid_access_token (unknown, superseded or revoked).
pub const INVALID_ACCESS_TOKEN: i64 = 21332;
/// temporarily_unavailable.
pub const TEMPORARILY_UNAVAILABLE: i64 = 21331;

/// A grant as the token endpoint issues it (code exchange or refresh). Debug hides tokens.
#[derive(Clone)]
pub struct Grant {
    /// The new access token.
    pub access_token: SecretString,
    /// Its life.
    pub expires_in: Duration,
    /// The new refresh token (the previous one is dead from now on).
    pub refresh_token: SecretString,
    /// Its life.
    pub refresh_expires_in: Duration,
    /// The merchant's Weibo uid.
    pub uid: Uid,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("uid", &self.uid)
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// What `get_token_info` says about a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Whose token it is.
    pub uid: Uid,
    /// The app it was issued to.
    pub appkey: String,
    /// Seconds it has left.
    pub expire_in: Duration,
}

/// Why an OAuth2 call did not succeed. Never carries a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The platform answered with an error.
    #[error("refused: HTTP {status}, code {code:?}: {error}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Weibo's `error_code`, when sent.
        code: Option<i64>,
        /// Its `error`/`error_description`, quoted and cut.
        error: String,
    },
    /// No answer: connection, time-out, a 5xx, a redirect, a body too large.
    #[error("no answer: {0}")]
    Transient(String),
    /// A 2xx answer that is not what the call returns.
    #[error("unreadable answer: {0}")]
    Malformed(String),
}

impl OAuthError {
    /// The code or refresh token is dead: the merchant must authorize again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: Some(INVALID_GRANT | EXPIRED_TOKEN),
                ..
            }
        ) || matches!(self, Self::Refused { code: None, error, .. } if error.contains("invalid_grant"))
    }

    /// Worth trying again later: nothing was settled.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transient(_) => true,
            Self::Refused { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code,
                        Some(TEMPORARILY_UNAVAILABLE | 10001..=10003 | 10022..=10024)
                    )
            }
            Self::Malformed(_) => false,
        }
    }

    /// The token asked about has died before its time: withdrawn, revoked or superseded, not
    /// merely expired.
    pub fn is_token_withdrawn(&self) -> bool {
        self.is_token_dead()
            && !matches!(
                self,
                Self::Refused {
                    code: Some(EXPIRED_TOKEN),
                    ..
                }
            )
    }

    /// The token asked about is not (or no longer) a live one.
    pub fn is_token_dead(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: Some(
                    INVALID_ACCESS_TOKEN | EXPIRED_TOKEN | INVALID_GRANT | 21314..=21317 | 21319
                ),
                ..
            }
        )
    }
}

/// The platform's OAuth2 endpoints, as provider mode needs them.
pub trait OAuthClient: Send + Sync {
    /// Exchanges an authorization code (once: a second exchange is refused).
    fn exchange_code<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Grant, OAuthError>>;
    /// Presents a refresh token; both tokens come back new and the old ones are dead.
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<Grant, OAuthError>>;
    /// Asks whether an access token is live, and whose it is.
    fn token_info<'a>(
        &'a self,
        access_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenInfo, OAuthError>>;
    /// Withdraws the authorization the access token belongs to.
    fn revoke<'a>(
        &'a self,
        access_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), OAuthError>>;
}

#[cfg(test)]
mod tests {
    use super::http::parse_grant;
    use super::*;

    #[test]
    fn grants_read_uid_either_way_and_never_echo_tokens() {
        for uid in ["1404376560", "\"1404376560\""] {
            let body = format!(
                r#"{{"access_token":"2.00a","expires_in":7200,"refresh_token":"2.00r","refresh_token_expires_in":2592000,"uid":{uid}}}"#
            );
            let grant = parse_grant(body.as_bytes()).unwrap();
            assert_eq!(grant.uid.as_str(), "1404376560");
            assert!(!format!("{grant:?}").contains("2.00"));
        }
        let err = parse_grant(br#"{"access_token":"2.00leak"}"#).unwrap_err();
        assert!(!err.to_string().contains("2.00leak"));
    }

    #[test]
    fn errors_are_classified() {
        let refused = |code| OAuthError::Refused {
            status: 400,
            code: Some(code),
            error: String::new(),
        };
        assert!(refused(INVALID_GRANT).is_invalid_grant());
        assert!(!refused(INVALID_GRANT).is_transient());
        assert!(refused(TEMPORARILY_UNAVAILABLE).is_transient());
        assert!(refused(10023).is_transient());
        assert!(!refused(21324).is_transient() && !refused(21324).is_invalid_grant());
        assert!(refused(INVALID_ACCESS_TOKEN).is_token_dead());
        assert!(OAuthError::Transient("x".into()).is_transient());
    }
}
