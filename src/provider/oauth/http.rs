//! [`HttpOAuthClient`]: Weibo's OAuth2 endpoints over HTTP, answers capped at 4 MiB, no
//! redirect followed, a deadline on every call.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Grant, OAuthClient, OAuthError, TokenInfo};
use crate::provider::domain::Uid;

/// Largest answer read: a token answer is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// [`OAuthClient`] over HTTP against `{oauth_base}/oauth2/...`.
#[derive(Clone)]
pub struct HttpOAuthClient {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: String,
}

impl fmt::Debug for HttpOAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOAuthClient")
            .field("base", &self.base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl HttpOAuthClient {
    /// A client of the provider's app (`client_id`, `client_secret`, registered
    /// `redirect_uri`) with `timeout` as each call's deadline.
    pub fn new(
        oauth_base: &str,
        client_id: &str,
        client_secret: SecretString,
        redirect_uri: &str,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Requests carry the app secret, codes and tokens: never to wherever a redirect says.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()?;
        Ok(Self {
            http,
            base: oauth_base.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// POSTs `form` to `oauth2/<endpoint>`; the body of a 2xx answer, or why not.
    async fn post(&self, endpoint: &str, form: &[(&str, &str)]) -> Result<Vec<u8>, OAuthError> {
        let url = format!("{}/oauth2/{endpoint}", self.base);
        let mut response = self
            .http
            .post(&url)
            .form(form)
            .send()
            .await
            .map_err(|e| OAuthError::Transient(format!("{endpoint}: {}", e.without_url())))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(OAuthError::Transient(format!(
                "{endpoint}: HTTP {} redirect not followed",
                status.as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(OAuthError::Transient(format!(
                "{endpoint}: answer too large"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OAuthError::Transient(format!("{endpoint}: {}", e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(OAuthError::Transient(format!(
                    "{endpoint}: answer too large"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        let read = crate::weibo::read_code(&body);
        Err(OAuthError::Refused {
            status: status.as_u16(),
            code: read.as_ref().map(|e| e.code),
            error: read.map_or_else(String::new, |e| crate::telemetry::shown(&e.msg)),
        })
    }

    async fn grant(&self, form: &[(&str, &str)]) -> Result<Grant, OAuthError> {
        let body = self.post("access_token", form).await?;
        parse_grant(&body)
    }
}

/// `{"access_token","expires_in","refresh_token","refresh_token_expires_in","uid"}`.
pub(super) fn parse_grant(body: &[u8]) -> Result<Grant, OAuthError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: SecretString,
        expires_in: u64,
        refresh_token: SecretString,
        refresh_token_expires_in: u64,
        uid: serde_json::Value,
    }
    // Never echo the body: it holds tokens.
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| OAuthError::Malformed("not a token answer".into()))?;
    let uid = uid_of(&answer.uid).ok_or_else(|| OAuthError::Malformed("uid unreadable".into()))?;
    if answer.access_token.expose_secret().is_empty()
        || answer.refresh_token.expose_secret().is_empty()
        || answer.expires_in == 0
    {
        return Err(OAuthError::Malformed(
            "empty token or zero expires_in".into(),
        ));
    }
    Ok(Grant {
        access_token: answer.access_token,
        expires_in: Duration::from_secs(answer.expires_in),
        refresh_token: answer.refresh_token,
        refresh_expires_in: Duration::from_secs(answer.refresh_token_expires_in),
        uid,
    })
}

/// A uid sent as a number or a string.
fn uid_of(value: &serde_json::Value) -> Option<Uid> {
    match value {
        serde_json::Value::String(s) => Uid::parse(s),
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| Uid::parse(&n.to_string())),
        _ => None,
    }
}

impl OAuthClient for HttpOAuthClient {
    fn exchange_code<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Grant, OAuthError>> {
        Box::pin(async move {
            let secret = self.client_secret.expose_secret();
            self.grant(&[
                ("client_id", &self.client_id),
                ("client_secret", secret),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
            ])
            .await
        })
    }

    fn refresh<'a>(
        &'a self,
        refresh_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<Grant, OAuthError>> {
        Box::pin(async move {
            self.grant(&[
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose_secret()),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ])
            .await
        })
    }

    fn token_info<'a>(
        &'a self,
        access_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenInfo, OAuthError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Answer {
                uid: serde_json::Value,
                appkey: serde_json::Value,
                expire_in: i64,
            }
            let body = self
                .post(
                    "get_token_info",
                    &[("access_token", access_token.expose_secret())],
                )
                .await?;
            let answer: Answer = serde_json::from_slice(&body)
                .map_err(|_| OAuthError::Malformed("not a token_info answer".into()))?;
            Ok(TokenInfo {
                uid: uid_of(&answer.uid)
                    .ok_or_else(|| OAuthError::Malformed("uid unreadable".into()))?,
                appkey: match answer.appkey {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                },
                expire_in: Duration::from_secs(u64::try_from(answer.expire_in).unwrap_or(0)),
            })
        })
    }

    fn revoke<'a>(
        &'a self,
        access_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), OAuthError>> {
        Box::pin(async move {
            let body = self
                .post(
                    "revokeoauth2",
                    &[("access_token", access_token.expose_secret())],
                )
                .await?;
            let answer: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| OAuthError::Malformed("not a revoke answer".into()))?;
            match answer.get("result") {
                Some(serde_json::Value::String(s)) if s == "true" => Ok(()),
                Some(serde_json::Value::Bool(true)) => Ok(()),
                _ => Err(OAuthError::Malformed(
                    "revoke answered without result true".into(),
                )),
            }
        })
    }
}
