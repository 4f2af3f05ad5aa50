//! The connect pages, served on the public listener beside the push path (contract:
//! "Configuration and paths"): `/connect/<id>` with its button, the callback at
//! `redirect_uri`'s path, and the cancel callback at `/connect/cancelled`. Mount them with
//! `App::new().configure(pages::configure(state))`.
//!
//! Every page carries a strict Content-Security-Policy: nothing loads from anywhere, the one
//! style sheet is inline and allowed by its hash, and forms may go only to this origin and
//! Weibo's authorize endpoint (Chromium applies `form-action` to the redirect that follows a
//! form post too). No page shows a token; none is cached, framed or sent as a referrer.

mod views;

use std::time::SystemTime;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Deserialize;

use super::onboarding::{
    AuthStatus, CallbackOutcome, CallbackParams, CancelOutcome, Onboarding, CANCEL_PATH,
    CONNECT_PATH,
};
use super::store::links::{LinkRefusal, StateRefusal};

/// What the pages need: the onboarding service and the policy header made from it.
pub struct PagesState {
    onboarding: Onboarding,
    csp: HeaderValue,
}

impl PagesState {
    /// The pages of `onboarding`.
    pub fn new(onboarding: Onboarding) -> Self {
        let authorize = onboarding
            .authorize_endpoint()
            .origin()
            .ascii_serialization();
        let csp = format!(
            "default-src 'none'; style-src {}; form-action 'self' {authorize}; \
             frame-ancestors 'none'; base-uri 'none'",
            views::css_source()
        );
        // The origin and the hash are plain ASCII; an unusable value falls back to the
        // strictest policy rather than none.
        let csp = HeaderValue::from_str(&csp)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        Self { onboarding, csp }
    }

    /// The onboarding service behind the pages.
    pub fn onboarding(&self) -> &Onboarding {
        &self.onboarding
    }

    fn respond(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut builder = HttpResponse::build(status);
        builder
            .insert_header((header::CONTENT_SECURITY_POLICY, self.csp.clone()))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        builder
    }

    fn html(&self, status: StatusCode, markup: maud::Markup) -> HttpResponse {
        self.respond(status)
            .content_type("text/html; charset=utf-8")
            .body(markup.into_string())
    }

    fn unavailable(&self, error: &dyn std::fmt::Display) -> HttpResponse {
        tracing::error!(%error, "connect page: store unavailable");
        self.html(
            StatusCode::SERVICE_UNAVAILABLE,
            views::message(
                "Try again shortly",
                "bad",
                &["The service is busy. Nothing was changed."],
            ),
        )
    }

    fn link_refused(&self, refusal: LinkRefusal) -> HttpResponse {
        let (status, title, line) = match refusal {
            LinkRefusal::Unknown => (
                StatusCode::NOT_FOUND,
                "Unknown link",
                "This link is not one we issued.",
            ),
            LinkRefusal::Used => (
                StatusCode::GONE,
                "Link already used",
                "Each link works once. Ask for a new one.",
            ),
            LinkRefusal::Expired => (
                StatusCode::GONE,
                "Link expired",
                "This link has expired. Ask for a new one.",
            ),
        };
        self.html(status, views::message(title, "bad", &[line]))
    }

    fn state_refused(&self, refusal: StateRefusal) -> HttpResponse {
        let (status, title) = match refusal {
            StateRefusal::Unknown => (StatusCode::BAD_REQUEST, "Unknown authorization request"),
            StateRefusal::Used => (StatusCode::CONFLICT, "Authorization request already used"),
            StateRefusal::Expired => (StatusCode::GONE, "Authorization request expired"),
        };
        self.html(
            status,
            views::message(
                title,
                "bad",
                &["Nothing was changed. Start again from a new link."],
            ),
        )
    }
}

/// Registers the pages: `/connect/cancelled`, the callback at `redirect_uri`'s path, then
/// `/connect/{id}` (GET shows it, POST is its button).
pub fn configure(state: Data<PagesState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let callback_path = state.onboarding.config().redirect_uri.path().to_owned();
        cfg.app_data(state)
            .route(CANCEL_PATH, web::get().to(cancelled))
            .route(&callback_path, web::get().to(callback))
            .route(&format!("{CONNECT_PATH}/{{id}}"), web::get().to(show))
            .route(&format!("{CONNECT_PATH}/{{id}}"), web::post().to(press));
    }
}

#[tracing::instrument(skip_all)]
async fn show(state: Data<PagesState>, id: Path<String>) -> HttpResponse {
    match state.onboarding.link(&id, SystemTime::now()).await {
        Ok(Ok(link)) => state.html(
            StatusCode::OK,
            views::connect(&state.onboarding.config().name, link.merchant_ref.as_str()),
        ),
        Ok(Err(refusal)) => state.link_refused(refusal),
        Err(e) => state.unavailable(&e),
    }
}

#[tracing::instrument(skip_all)]
async fn press(state: Data<PagesState>, id: Path<String>) -> HttpResponse {
    match state.onboarding.begin(&id, SystemTime::now()).await {
        Ok(Ok(authorize)) => state
            .respond(StatusCode::SEE_OTHER)
            .insert_header((header::LOCATION, authorize.as_str()))
            .finish(),
        Ok(Err(refusal)) => state.link_refused(refusal),
        Err(e) => state.unavailable(&e),
    }
}

#[tracing::instrument(skip_all)]
async fn callback(state: Data<PagesState>, query: Query<CallbackParams>) -> HttpResponse {
    match state.onboarding.callback(&query, SystemTime::now()).await {
        Ok(CallbackOutcome::Refused(refusal)) => state.state_refused(refusal),
        Ok(CallbackOutcome::Finished {
            redirect: Some(url),
            ..
        }) => state
            .respond(StatusCode::SEE_OTHER)
            .insert_header((header::LOCATION, url.as_str()))
            .finish(),
        Ok(CallbackOutcome::Finished {
            merchant_ref,
            status,
            redirect: None,
        }) => {
            let shop = format!("Merchant: {merchant_ref}");
            let markup = match status {
                AuthStatus::Success => views::message(
                    "Authorized",
                    "ok",
                    &[&shop, "Your shop is connected. You can close this page."],
                ),
                AuthStatus::Failed(reason) => {
                    let why = format!("Reason: {reason}");
                    views::message("Not authorized", "bad", &[&shop, &why])
                }
            };
            state.html(StatusCode::OK, markup)
        }
        Err(e) => state.unavailable(&e),
    }
}

/// The cancel callback's query.
#[derive(Debug, Deserialize)]
struct Cancel {
    source: Option<String>,
    uid: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn cancelled(state: Data<PagesState>, query: Query<Cancel>) -> HttpResponse {
    let outcome = state
        .onboarding
        .cancel_callback(
            query.source.as_deref(),
            query.uid.as_deref(),
            SystemTime::now(),
        )
        .await;
    match outcome {
        // The same answer whatever was found: a stranger learns nothing about which uids exist.
        Ok(CancelOutcome::Revoked(_) | CancelOutcome::Ignored(_)) => state
            .respond(StatusCode::OK)
            .content_type("text/plain")
            .body("ok"),
        Ok(CancelOutcome::Unconfirmed(why)) => {
            tracing::warn!(%why, "cancel callback not confirmed");
            state
                .respond(StatusCode::SERVICE_UNAVAILABLE)
                .content_type("text/plain")
                .body("try again")
        }
        Err(e) => state.unavailable(&e),
    }
}
