//! `oauth2/access_token` (authorization_code and refresh_token grants), `get_token_info` and
//! `revokeoauth2`, answering errors in Weibo's OAuth2 envelope.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, Data};
use actix_web::HttpResponse;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::book::{EXPIRED_TOKEN, INVALID_GRANT};
use super::OAuth2State;

/// invalid_request.
const INVALID_REQUEST: i64 = 21323;
/// invalid_client.
const INVALID_CLIENT: i64 = 21324;
/// redirect_uri_mismatch.
const REDIRECT_URI_MISMATCH: i64 = 21322;
/// unsupported_grant_type.
const UNSUPPORTED_GRANT_TYPE: i64 = 21328;
/// temporarily_unavailable.
const TEMPORARILY_UNAVAILABLE: i64 = 21331;

/// Weibo's OAuth2 error answer.
pub fn oauth_error(code: i64, description: &str) -> HttpResponse {
    let error = match code {
        REDIRECT_URI_MISMATCH => "redirect_uri_mismatch",
        INVALID_REQUEST => "invalid_request",
        INVALID_CLIENT => "invalid_client",
        INVALID_GRANT => "invalid_grant",
        EXPIRED_TOKEN => "expired_token",
        UNSUPPORTED_GRANT_TYPE => "unsupported_grant_type",
        TEMPORARILY_UNAVAILABLE => "temporarily_unavailable",
        _ => "invalid_access_token",
    };
    let body = json!({"error": error, "error_code": code, "error_description": description});
    if code == TEMPORARILY_UNAVAILABLE {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::BadRequest().json(body)
    }
}

fn form(body: &Bytes) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /oauth2/access_token`
pub async fn access_token(state: Data<OAuth2State>, body: Bytes) -> HttpResponse {
    let params = form(&body);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let Some(app) = state
        .app
        .as_ref()
        .filter(|a| a.client_id == get("client_id"))
    else {
        return oauth_error(INVALID_CLIENT, "unknown client_id");
    };
    let secret_ok: bool = app
        .client_secret
        .expose_secret()
        .as_bytes()
        .ct_eq(get("client_secret").as_bytes())
        .into();
    if !secret_ok {
        return oauth_error(INVALID_CLIENT, "client_secret does not match");
    }
    match get("grant_type") {
        "authorization_code" => {
            if get("redirect_uri") != app.redirect_uri {
                return oauth_error(
                    REDIRECT_URI_MISMATCH,
                    "redirect_uri is not the registered one",
                );
            }
            let exchanged = state.lock().exchange(
                &app.client_id,
                get("code"),
                get("redirect_uri"),
                Instant::now(),
            );
            match exchanged {
                Ok(issued) => HttpResponse::Ok().json(issued),
                Err((code, why)) => oauth_error(code, why),
            }
        }
        "refresh_token" => {
            let presented = get("refresh_token");
            if presented.is_empty() {
                return oauth_error(INVALID_REQUEST, "refresh_token missing");
            }
            let (fault, delay) = {
                let mut book = state.lock();
                book.note_presented(presented);
                let uid = book.uid_of_refresh(presented);
                (book.fault_for(uid.as_deref()), book.faults.delay_ms)
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            match fault.as_deref() {
                Some("unavailable") => {
                    state.lock().counters.refresh_faulted += 1;
                    return oauth_error(
                        TEMPORARILY_UNAVAILABLE,
                        "injected: temporarily unavailable",
                    );
                }
                // The refresh token refused (expired, or presented after its rotation); the
                // access token lives on to its end. A withdrawal is `cancel` or `withdraw`,
                // which end the whole grant.
                Some(_) => {
                    state.lock().counters.refresh_faulted += 1;
                    return oauth_error(INVALID_GRANT, "injected: invalid_grant");
                }
                None => {}
            }
            let refreshed = state
                .lock()
                .refresh(&app.client_id, presented, Instant::now());
            match refreshed {
                Ok(issued) => HttpResponse::Ok().json(issued),
                Err((code, why)) => oauth_error(code, why),
            }
        }
        _ => oauth_error(
            UNSUPPORTED_GRANT_TYPE,
            "grant_type must be authorization_code or refresh_token",
        ),
    }
}

/// `POST /oauth2/get_token_info`
pub async fn token_info(state: Data<OAuth2State>, body: Bytes) -> HttpResponse {
    let params = form(&body);
    let mut book = state.lock();
    book.counters.token_info_calls += 1;
    let token = params
        .get("access_token")
        .map(String::as_str)
        .unwrap_or_default();
    match book.info(token, Instant::now()) {
        Ok(info) => HttpResponse::Ok().json(info),
        Err(code) => oauth_error(code, "access_token invalid, superseded or revoked"),
    }
}

/// `POST /oauth2/revokeoauth2`
pub async fn revoke(state: Data<OAuth2State>, body: Bytes) -> HttpResponse {
    let params = form(&body);
    let mut book = state.lock();
    book.counters.revoke_calls += 1;
    let token = params
        .get("access_token")
        .map(String::as_str)
        .unwrap_or_default();
    let uid = match book.by_access(token, Instant::now()) {
        Ok(grant) => grant.uid.clone(),
        Err(code) => return oauth_error(code, "access_token invalid, superseded or revoked"),
    };
    book.withdraw(&uid);
    HttpResponse::Ok().json(json!({"result": "true"}))
}
