//! Weibo's OAuth2 side, as a service provider's app meets it (service-provider spec,
//! section 1): a consent page at `oauth2/authorize` with Authorize and Deny, the token
//! endpoint for both grants with rotation, `get_token_info`, `revokeoauth2`, and in the admin
//! API counters of everything presented, faults for refreshes, and a trigger that withdraws a
//! user's authorization and calls the app's cancel callback.

mod book;
mod consent;
mod tokens;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::web::{self, Data, Json};
use actix_web::HttpResponse;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

pub use book::{OAuth2Counters, OAuth2Faults};

/// The provider's app as registered with the sandbox.
#[derive(Debug, Clone)]
pub struct OAuth2App {
    /// The app's client_id (appkey).
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// The registered callback; `authorize` accepts no other.
    pub redirect_uri: String,
    /// The "cancel authorization" callback, when registered.
    pub cancel_url: Option<String>,
    /// Life of access tokens (2 h).
    pub access_ttl: Duration,
    /// Life of refresh tokens (30 days).
    pub refresh_ttl: Duration,
}

impl OAuth2App {
    /// An app with Weibo's token lives (2 h access, 30 days refresh) and no cancel callback.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: SecretString::from(client_secret.to_owned()),
            redirect_uri: redirect_uri.to_owned(),
            cancel_url: None,
            access_ttl: Duration::from_secs(7200),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The OAuth2 side's `web::Data`.
pub struct OAuth2State {
    app: Option<OAuth2App>,
    book: Mutex<book::Book>,
    http: reqwest::Client,
}

impl OAuth2State {
    /// The OAuth2 side for `app` (none: every client is unknown).
    pub fn new(app: Option<OAuth2App>) -> Self {
        let (access, refresh) = app.as_ref().map_or(
            (Duration::from_secs(7200), Duration::from_secs(2_592_000)),
            |a| (a.access_ttl, a.refresh_ttl),
        );
        Self {
            app,
            book: Mutex::new(book::Book::new(access, refresh)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, book::Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was presented so far.
    pub fn counters(&self) -> OAuth2Counters {
        self.lock().counters.clone()
    }

    /// When each refresh arrived, ms since the sandbox started.
    pub fn refresh_timeline(&self) -> Vec<u64> {
        self.lock().refresh_timeline.clone()
    }

    /// The uid whose live grant holds `access_token`, counting the call; or the token code
    /// (invalid or expired) the platform answers.
    pub fn accept_call(&self, access_token: &str) -> Result<String, i64> {
        let mut book = self.lock();
        let uid = book
            .by_access(access_token, std::time::Instant::now())?
            .uid
            .clone();
        *book.counters.calls_by_uid.entry(uid.clone()).or_default() += 1;
        Ok(uid)
    }

    /// Ends `uid`'s current access token now (a refresh gets a new one).
    pub fn expire_access(&self, uid: &str) -> usize {
        self.lock().expire_access(uid, std::time::Instant::now())
    }

    /// Withdraws `uid`'s authorization without calling the cancel callback (one lost on
    /// the way); returns how many grants ended.
    pub fn withdraw(&self, uid: &str) -> usize {
        self.lock().withdraw(uid)
    }

    /// Sets the refresh faults.
    pub fn set_faults(&self, faults: OAuth2Faults) {
        self.lock().faults = faults;
    }

    /// Approves as `uid` without the page (what pressing Authorize does): a code for the
    /// registered redirect_uri.
    pub fn approve(&self, uid: &str) -> Option<String> {
        let app = self.app.as_ref()?;
        Some(self.lock().issue_code(
            &app.client_id,
            &app.redirect_uri,
            uid,
            std::time::Instant::now(),
        ))
    }

    /// Withdraws `uid`'s authorization and, when `notify`, calls the cancel callback; returns
    /// the callback's HTTP status.
    pub async fn cancel(&self, uid: &str, withdraw: bool) -> Result<u16, String> {
        let app = self.app.as_ref().ok_or("no app registered")?;
        if withdraw {
            self.lock().withdraw(uid);
        }
        let url = app.cancel_url.as_ref().ok_or("no cancel_url registered")?;
        self.lock().counters.cancel_calls += 1;
        let auth_end = weibo_relay::clock::unix_secs().to_string();
        let answer = self
            .http
            .get(url)
            .query(&[
                ("source", app.client_id.as_str()),
                ("uid", uid),
                ("auth_end", &auth_end),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer.status().as_u16())
    }
}

/// Registers the OAuth2 endpoints and their admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/authorize", web::get().to(consent::page))
        .route("/oauth2/authorize", web::post().to(consent::decide))
        .route("/oauth2/access_token", web::post().to(tokens::access_token))
        .route("/oauth2/get_token_info", web::post().to(tokens::token_info))
        .route("/oauth2/revokeoauth2", web::post().to(tokens::revoke))
        .route("/admin/oauth2/counters", web::get().to(counters))
        .route("/admin/oauth2/faults", web::post().to(faults))
        .route("/admin/oauth2/cancel", web::post().to(cancel));
}

/// `GET /admin/oauth2/counters` -> counters and the refresh timeline.
async fn counters(state: Data<OAuth2State>) -> HttpResponse {
    let book = state.lock();
    HttpResponse::Ok().json(json!({
        "counters": book.counters,
        "refresh_timeline_ms": book.refresh_timeline,
    }))
}

/// `POST /admin/oauth2/faults {"refresh":"unavailable"|"invalid_grant"|null,"uids":[..],"delay_ms":N}`
async fn faults(state: Data<OAuth2State>, body: Json<OAuth2Faults>) -> HttpResponse {
    let faults = body.into_inner();
    if !matches!(
        faults.refresh.as_deref(),
        None | Some("unavailable" | "invalid_grant")
    ) {
        return HttpResponse::BadRequest().json(
            json!({"code": 40002, "msg": "refresh must be unavailable, invalid_grant or null"}),
        );
    }
    state.set_faults(faults.clone());
    HttpResponse::Ok().json(faults)
}

/// `POST /admin/oauth2/cancel` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    uid: String,
    /// Withdraw the authorization first (false: only send the callback, as a forger would).
    #[serde(default = "yes")]
    withdraw: bool,
    /// Call the cancel callback (false: the callback is lost on the way; the relay learns
    /// of the withdrawal from a refused call).
    #[serde(default = "yes")]
    notify: bool,
}

fn yes() -> bool {
    true
}

/// `POST /admin/oauth2/cancel {"uid":..,"withdraw":true,"notify":true}` ->
/// `{"callback_status":N}` (`{"withdrawn":N}` without the callback).
async fn cancel(state: Data<OAuth2State>, body: Json<Cancel>) -> HttpResponse {
    if !body.notify {
        let withdrawn = if body.withdraw {
            state.withdraw(&body.uid)
        } else {
            0
        };
        return HttpResponse::Ok().json(json!({ "withdrawn": withdrawn }));
    }
    match state.cancel(&body.uid, body.withdraw).await {
        Ok(status) => HttpResponse::Ok().json(json!({"callback_status": status})),
        Err(e) => HttpResponse::BadRequest().json(json!({"code": 40002, "msg": e})),
    }
}
