//! The Weibo platform client: token requests (spec section 3) and the order interfaces
//! (section 4), each call answered by a classified [`CallOutcome`].

mod access_token;
mod call;
mod outcome;

use std::time::{Duration, SystemTime};

use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::ids::SubOrderId;
use crate::settings::{CodeTable, Merchant, WeiboSettings};
use crate::signature;
use crate::telemetry::error_chain;

pub use access_token::{Token, TokenError};
pub use call::{InterfaceCall, Probe, Reply, COMMON_PARAMS};
pub use outcome::{classify, read_code, Action, CallOutcome, PlatformError};

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client (TLS backend) could not be initialised.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Calls the platform on behalf of any configured merchant. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WeiboClient {
    http: reqwest::Client,
    api_base: String,
    oauth_base: String,
    /// The token endpoint's host, to name in errors (never the URL: its query is signed).
    oauth_host: String,
    codes: std::sync::Arc<CodeTable>,
}

impl WeiboClient {
    /// A client with `weibo.timeout_ms` as the deadline of each call.
    pub fn new(settings: &WeiboSettings) -> Result<Self, ClientError> {
        let timeout = settings.timeout_ms.get();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Every call carries the access_token or a signed token request: a redirect would
            // hand them to whoever the answer names, and take that host's word for the result.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()?;
        Ok(Self {
            http,
            api_base: settings.api_base.as_str().trim_end_matches('/').to_owned(),
            oauth_base: settings
                .oauth_base
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            oauth_host: settings.oauth_base.host_str().map_or_else(
                || "token endpoint".into(),
                |h| format!("token endpoint {h}"),
            ),
            codes: std::sync::Arc::new(settings.codes.clone()),
        })
    }

    /// Reports the sub order performed (`retailerFinishSub`).
    #[tracing::instrument(skip_all, fields(appid = %merchant.appid(), %sub_order_id))]
    pub async fn finish(
        &self,
        merchant: &Merchant,
        sub_order_id: &SubOrderId,
        token: &Token,
    ) -> CallOutcome {
        self.order_call(Action::Finish, merchant, sub_order_id, None, token)
            .await
    }

    /// Reports the sub order failed, closing it (`retailerCloseSub`).
    #[tracing::instrument(skip_all, fields(appid = %merchant.appid(), %sub_order_id))]
    pub async fn close(
        &self,
        merchant: &Merchant,
        sub_order_id: &SubOrderId,
        reason: &str,
        token: &Token,
    ) -> CallOutcome {
        self.order_call(Action::Close, merchant, sub_order_id, Some(reason), token)
            .await
    }

    async fn order_call(
        &self,
        action: Action,
        merchant: &Merchant,
        sub_order_id: &SubOrderId,
        reason: Option<&str>,
        token: &Token,
    ) -> CallOutcome {
        let timestamp = crate::clock::unix_secs().to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("appid", merchant.appid().as_str()),
            ("sub_order_id", sub_order_id.as_str()),
            ("timestamp", &timestamp),
            ("sign_type", "md5"),
        ];
        if let Some(reason) = reason {
            params.push(("reason", reason));
        }
        let sign = signature::sign(params.iter().copied(), merchant.sign_key().expose_secret());
        params.push(("sign", &sign));
        params.push(("access_token", token.secret().expose_secret()));
        let url = format!("{}/order/{}", self.api_base, action.endpoint());
        let outcome = match self.http.post(&url).form(&params).send().await {
            Ok(response) if response.status().is_redirection() => CallOutcome::Transient {
                code: None,
                reason: redirect_refused(&response),
            },
            Ok(response) => {
                let status = response.status();
                match read_answer(response).await {
                    Ok(body) => classify(action, status, &body, &self.codes),
                    Err(unread) => unread.into_outcome(),
                }
            }
            Err(e) => transport(&e),
        };
        tracing::debug!(%outcome, "platform answered");
        outcome
    }

    /// One page of the sub orders of `merchant` updated in `[start, end]`
    /// (`retailerGetSubList`, platform spec section 4). The platform may return fewer rows
    /// than `page_size` asked for.
    #[tracing::instrument(skip_all, fields(appid = %merchant.appid(), page))]
    pub async fn sub_list(
        &self,
        merchant: &Merchant,
        token: &Token,
        start: SystemTime,
        end: SystemTime,
        page: u32,
        page_size: u32,
    ) -> Result<SubListPage, CallOutcome> {
        let timestamp = crate::clock::unix_secs().to_string();
        let (start, end) = (beijing_time(start), beijing_time(end));
        let (page, page_size) = (page.to_string(), page_size.to_string());
        let mut params: Vec<(&str, &str)> = vec![
            ("appid", merchant.appid().as_str()),
            ("start_time", &start),
            ("end_time", &end),
            ("page", &page),
            ("page_size", &page_size),
            ("timestamp", &timestamp),
            ("sign_type", "md5"),
        ];
        let sign = signature::sign(params.iter().copied(), merchant.sign_key().expose_secret());
        params.push(("sign", &sign));
        params.push(("access_token", token.secret().expose_secret()));
        let url = format!("{}/order/{}", self.api_base, Action::List.endpoint());
        let response = match self.http.get(&url).query(&params).send().await {
            Ok(response) if response.status().is_redirection() => {
                return Err(CallOutcome::Transient {
                    code: None,
                    reason: redirect_refused(&response),
                })
            }
            Ok(response) => response,
            // The query carries the token: keep the URL out of the reason.
            Err(e) => return Err(transport(&e.without_url())),
        };
        let status = response.status();
        let body = read_answer(response)
            .await
            .map_err(|unread| unread.without_url().into_outcome())?;
        match classify(Action::List, status, &body, &self.codes) {
            CallOutcome::Succeeded { .. } => {
                SubListPage::parse(&body).ok_or(CallOutcome::Permanent {
                    code: Some(0),
                    msg: "retailerGetSubList answered without data.total and data.list".into(),
                })
            }
            other => Err(other),
        }
    }

    /// Obtains a new access_token for `merchant`; this invalidates the previous one, so only
    /// the token keeper calls it.
    #[tracing::instrument(skip_all, fields(appid = %merchant.appid()))]
    pub async fn fetch_token(&self, merchant: &Merchant) -> Result<Token, TokenError> {
        let timestamp = crate::clock::unix_millis().to_string();
        let nonce = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let sign = signature::token_sign(
            merchant.client_id(),
            merchant.uid(),
            &timestamp,
            &nonce,
            merchant.client_secret().expose_secret(),
        );
        let url = format!("{}/oauth2/shop/authorize", self.oauth_base);
        // Measured before sending: the token cannot have been issued earlier than this.
        let obtained_at = Instant::now();
        let response = self
            .http
            .get(&url)
            .query(&[
                ("client_id", merchant.client_id()),
                ("timestamp", &timestamp),
                ("nonce", &nonce),
                ("sign", &sign),
            ])
            .send()
            .await
            // The URL's query carries the request's signature: keep it out of every message.
            .map_err(|e| {
                TokenError::Transport(format!(
                    "{}: {}",
                    self.oauth_host,
                    error_chain(&e.without_url())
                ))
            })?;
        if response.status().is_redirection() {
            return Err(TokenError::Refused {
                status: response.status().as_u16(),
                code: None,
                msg: redirect_refused(&response),
            });
        }
        let status = response.status().as_u16();
        let body = read_answer(response).await.map_err(|unread| {
            TokenError::Transport(format!("{}: {}", self.oauth_host, unread.without_url()))
        })?;
        access_token::parse_token_answer(status, &body, obtained_at)
    }
}

/// Why a redirect was not followed, naming only the host it pointed to (its path or query
/// could carry anything).
fn redirect_refused(response: &reqwest::Response) -> String {
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "an unreadable location".to_owned());
    format!(
        "HTTP {} redirect to {} not followed",
        response.status().as_u16(),
        crate::telemetry::shown(&target)
    )
}

/// Largest platform answer read: a page of 100 orders is tens of KiB, a token answer a few
/// hundred bytes; a host that sends more is not answering a call.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
enum Unread {
    /// The connection failed while reading.
    #[error("{}", error_chain(.0))]
    Transport(reqwest::Error),
    /// More than [`MAX_ANSWER_BYTES`].
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes, not read")]
    TooLarge,
}

impl Unread {
    /// The same, with any URL (and the token its query may carry) left out.
    fn without_url(self) -> Self {
        match self {
            Self::Transport(e) => Self::Transport(e.without_url()),
            too_large => too_large,
        }
    }

    fn into_outcome(self) -> CallOutcome {
        match self {
            Self::Transport(e) => transport(&e),
            too_large => CallOutcome::Transient {
                code: None,
                reason: too_large.to_string(),
            },
        }
    }
}

/// The body of `response`, read up to [`MAX_ANSWER_BYTES`] and no further.
async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, Unread> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(Unread::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Unread::Transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport(e: &reqwest::Error) -> CallOutcome {
    let kind = if e.is_timeout() {
        "time-out"
    } else if e.is_connect() {
        "connection error"
    } else {
        "transport error"
    };
    CallOutcome::Transient {
        code: None,
        reason: format!("{kind}: {}", error_chain(e)),
    }
}

/// A page of `retailerGetSubList`.
#[derive(Debug)]
pub struct SubListPage {
    /// Rows in the whole range.
    pub total: u64,
    /// This page's rows as the platform wrote them (the fields of a type 2 push's content,
    /// plus `update_time`), unparsed: the reader decides how large a row it opens.
    pub list: Vec<Box<serde_json::value::RawValue>>,
}

impl SubListPage {
    fn parse(body: &[u8]) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Data,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            total: u64,
            list: Vec<Box<serde_json::value::RawValue>>,
        }
        let data = serde_json::from_slice::<Answer>(body).ok()?.data;
        Some(Self {
            total: data.total,
            list: data.list,
        })
    }
}

/// `YYYY-MM-DD HH:MM:SS` in Beijing time (UTC+8, no daylight saving), as the platform writes it;
/// a time the format cannot hold is written as its first or last second.
pub fn beijing_time(at: SystemTime) -> String {
    let shifted = crate::clock::Later::later(at, Duration::from_secs(8 * 3600));
    let utc = crate::clock::rfc3339(shifted).unwrap_or_else(|| {
        let past_9999 = shifted > std::time::UNIX_EPOCH;
        if past_9999 {
            "9999-12-31T23:59:59Z"
        } else {
            "1970-01-01T00:00:00Z"
        }
        .to_owned()
    });
    // "2026-11-25T08:00:00Z" -> "2026-11-25 08:00:00"
    utc.trim_end_matches('Z').replacen('T', " ", 1)
}
