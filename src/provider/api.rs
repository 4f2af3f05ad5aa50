//! Provider mode's JSON API for the provider's back office, on the gateway's listener
//! (`gateway.bind`, the merchant's own network, never the push port): links, status and
//! revocation, as `weibo-relay merchants` offers them on the command line. Callers are the
//! `[[gateway.clients]]` with `merchants = true`, by bearer key.

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use actix_web::dev::Server;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::domain::MerchantRef;
use super::onboarding::{LinkError, Onboarding, RevokeError, RevokeOutcome};
use crate::settings::{GatewayClient, KeyHash};

/// How long a client may take to send a request's head.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request body: a return URL.
const MAX_BODY_BYTES: usize = 4096;

/// The API's state: who may call, and the merchants' onboarding over the store.
pub struct MerchantsApi {
    clients: Vec<(String, KeyHash)>,
    onboarding: Onboarding,
}

impl MerchantsApi {
    /// The API for the clients allowed to manage merchants.
    pub fn new(clients: &[GatewayClient], onboarding: Onboarding) -> Self {
        Self {
            clients: clients
                .iter()
                .filter(|c| c.merchants)
                .map(|c| (c.name.clone(), c.key_sha256.clone()))
                .collect(),
            onboarding,
        }
    }

    /// The client whose key the request bears; every hash compared in constant time.
    fn caller(&self, req: &HttpRequest) -> Result<&str, ApiError> {
        let key = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = KeyHash::of(key);
        let mut found = None;
        for (name, known) in &self.clients {
            if bool::from(known.bytes().ct_eq(hash.bytes())) {
                found = Some(name.as_str());
            }
        }
        found.ok_or(ApiError::Unauthorized)
    }
}

/// Why a request was not served; each maps to its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or one no merchants client has.
    #[error("a client key with merchants = true is required (Authorization: Bearer <key>)")]
    Unauthorized,
    /// Not a merchant_ref.
    #[error("merchant_ref must be 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadRef,
    /// The body is not what the route takes.
    #[error("bad request: {0}")]
    BadBody(String),
    /// No such merchant, or path.
    #[error("not found")]
    NotFound,
    /// Revoking a merchant that is not authorized.
    #[error("the merchant is {0}: no authorization to revoke")]
    NotAuthorized(String),
    /// The store or the platform failed; nothing changed.
    #[error("not done: {0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRef | Self::BadBody(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::NotAuthorized(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({
            "code": self.status_code().as_u16(),
            "msg": crate::telemetry::clip(&self.to_string(), 300),
        }))
    }
}

/// The API's server on `listener` (the gateway's), serving once polled.
pub fn serve(
    listener: TcpListener,
    api: Data<MerchantsApi>,
    shutdown_timeout: u64,
) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(api.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|e, _| {
                        actix_web::Error::from(ApiError::BadBody(crate::telemetry::clip(
                            &e.to_string(),
                            200,
                        )))
                    }),
            )
            .route("/v1/merchants", web::get().to(list))
            .route("/v1/merchants/{merchant_ref}", web::get().to(show))
            .route("/v1/merchants/{merchant_ref}/link", web::post().to(link))
            .route(
                "/v1/merchants/{merchant_ref}/revoke",
                web::post().to(revoke),
            )
            .default_service(web::to(|| async { ApiError::NotFound.error_response() }))
    })
    .workers(1)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .run())
}

fn parse_ref(text: &str) -> Result<MerchantRef, ApiError> {
    MerchantRef::parse(text).ok_or(ApiError::BadRef)
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(error.to_string())
}

/// `GET /v1/merchants`: every merchant, as `merchants list --json` prints them.
#[tracing::instrument(name = "merchants_api", skip_all, fields(client))]
async fn list(api: Data<MerchantsApi>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tracing::Span::current().record("client", api.caller(&req)?);
    let rows = api
        .onboarding
        .store()
        .merchants()
        .await
        .map_err(unavailable)?;
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    Ok(HttpResponse::Ok().json(json!({ "merchants": views })))
}

/// `GET /v1/merchants/<ref>`: one merchant.
#[tracing::instrument(name = "merchants_api", skip_all, fields(client))]
async fn show(
    api: Data<MerchantsApi>,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    tracing::Span::current().record("client", api.caller(&req)?);
    let merchant = parse_ref(&path)?;
    let row = api
        .onboarding
        .store()
        .merchant(&merchant)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// The body of a link request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    #[serde(default)]
    return_url: Option<String>,
}

/// `POST /v1/merchants/<ref>/link`: a single-use onboarding link (201).
#[tracing::instrument(name = "merchants_api", skip_all, fields(client))]
async fn link(
    api: Data<MerchantsApi>,
    req: HttpRequest,
    path: Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    tracing::Span::current().record("client", api.caller(&req)?);
    let merchant = parse_ref(&path)?;
    // No body is a link without a return URL; any other body must be exactly the request.
    let body: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadBody(crate::telemetry::clip(&e.to_string(), 200)))?
    };
    let link = api
        .onboarding
        .create_link(&merchant, body.return_url.as_deref(), SystemTime::now())
        .await
        .map_err(|e| match e {
            LinkError::ReturnUrlRefused => ApiError::BadBody(e.to_string()),
            LinkError::Store(e) => unavailable(e),
        })?;
    Ok(HttpResponse::Created().json(json!({
        "merchant_ref": link.merchant_ref,
        "link": link.url.as_str(),
        "expires_at": crate::clock::rfc3339(link.expires_at),
    })))
}

/// `POST /v1/merchants/<ref>/revoke`: withdraws the authorization at Weibo and deletes the
/// tokens.
#[tracing::instrument(name = "merchants_api", skip_all, fields(client))]
async fn revoke(
    api: Data<MerchantsApi>,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    tracing::Span::current().record("client", api.caller(&req)?);
    let merchant = parse_ref(&path)?;
    match api.onboarding.revoke(&merchant, SystemTime::now()).await {
        Ok(RevokeOutcome::Revoked) => Ok(HttpResponse::Ok().json(json!({
            "merchant_ref": merchant,
            "status": "revoked",
        }))),
        Ok(RevokeOutcome::NotAuthorized(status)) => {
            Err(ApiError::NotAuthorized(status.as_str().to_owned()))
        }
        Err(RevokeError::Unknown(_)) => Err(ApiError::NotFound),
        Err(e) => Err(unavailable(e)),
    }
}
