//! The consent page: `GET /oauth2/authorize` shows the app and who is signed in (a uid field
//! stands in for Weibo's login), `POST` with Authorize or Deny sends the browser back to the
//! registered `redirect_uri` with a code or `error=access_denied`, and the `state` echoed.

use actix_web::http::header;
use actix_web::web::{Bytes, Data, Query};
use actix_web::HttpResponse;
use maud::{html, Markup, DOCTYPE};
use rand::Rng;
use serde::Deserialize;
use url::Url;

use super::OAuth2State;

/// access_denied.
const ACCESS_DENIED: i64 = 21330;

/// The query of `GET /oauth2/authorize` and the hidden fields of its form.
#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
}

fn error_page(code: i64, error: &str) -> HttpResponse {
    let body = html! {
        (DOCTYPE)
        html { head { title { "Weibo authorization error" } }
            body { h1 id="error" { "Error " (code) ": " (error) } } }
    };
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(body.into_string())
}

/// The request checked as Weibo does before showing anything: a known client, its registered
/// redirect_uri exactly, `response_type=code`. A bad one is an error page, never a redirect.
fn check<'a>(
    state: &'a OAuth2State,
    q: &AuthorizeQuery,
) -> Result<&'a super::OAuth2App, Box<HttpResponse>> {
    let app = state
        .app
        .as_ref()
        .filter(|a| q.client_id.as_deref() == Some(a.client_id.as_str()))
        .ok_or_else(|| Box::new(error_page(21324, "invalid_client")))?;
    if q.redirect_uri.as_deref() != Some(app.redirect_uri.as_str()) {
        return Err(Box::new(error_page(21322, "redirect_uri_mismatch")));
    }
    if q.response_type.as_deref() != Some("code") {
        return Err(Box::new(error_page(
            21323,
            "invalid_request: response_type must be code",
        )));
    }
    Ok(app)
}

fn markup(app: &super::OAuth2App, q: &AuthorizeQuery, uid: u64) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Weibo - authorize an application" }
            }
            body style="font-family:sans-serif;max-width:32rem;margin:3rem auto" {
                h1 { "Weibo (sandbox)" }
                p { "Application " strong { (app.client_id) } " asks to access your shop's orders." }
                form method="post" {
                    input type="hidden" name="client_id" value=(app.client_id);
                    input type="hidden" name="redirect_uri" value=(app.redirect_uri);
                    input type="hidden" name="response_type" value="code";
                    input type="hidden" name="state" value=(q.state.as_deref().unwrap_or_default());
                    p { label { "Signed in as uid " input type="text" name="uid" id="uid" value=(uid); } }
                    button type="submit" name="decision" value="authorize" id="authorize" { "Authorize" }
                    " "
                    button type="submit" name="decision" value="deny" id="deny" { "Deny" }
                }
            }
        }
    }
}

/// `GET /oauth2/authorize`
pub async fn page(state: Data<OAuth2State>, q: Query<AuthorizeQuery>) -> HttpResponse {
    let app = match check(&state, &q) {
        Ok(app) => app,
        Err(page) => return *page,
    };
    let uid = rand::rng().random_range(5_000_000_000u64..6_000_000_000);
    // No form-action here: Chromium applies it to every redirect after the post, and the
    // app's callback redirects on to wherever the app sends its browser (a back office).
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .content_type("text/html; charset=utf-8")
        .body(markup(app, &q, uid).into_string())
}

/// `POST /oauth2/authorize` (the form): Authorize or Deny.
pub async fn decide(state: Data<OAuth2State>, body: Bytes) -> HttpResponse {
    let fields: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| fields.get(k).cloned();
    let q = AuthorizeQuery {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        state: get("state"),
    };
    let app = match check(&state, &q) {
        Ok(app) => app,
        Err(page) => return *page,
    };
    let Ok(mut target) = Url::parse(&app.redirect_uri) else {
        return error_page(21322, "redirect_uri_mismatch");
    };
    let echoed = q.state.clone().unwrap_or_default();
    match get("decision").as_deref() {
        Some("authorize") => {
            let uid = get("uid").unwrap_or_default();
            if uid.is_empty() || uid.len() > 20 || !uid.bytes().all(|b| b.is_ascii_digit()) {
                return error_page(21323, "invalid_request: uid must be digits");
            }
            let Some(code) = state.approve(&uid) else {
                return error_page(21324, "invalid_client");
            };
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &echoed);
        }
        _ => {
            state.lock().counters.denied += 1;
            target
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_code", &ACCESS_DENIED.to_string())
                .append_pair("error_description", "the user denied your request")
                .append_pair("state", &echoed);
        }
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, target.as_str()))
        .finish()
}
