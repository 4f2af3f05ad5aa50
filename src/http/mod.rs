//! The HTTP surface: pushes, health, readiness, metrics.

mod push;

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::amqp::Broker;
use crate::keeper::TokenKeeper;
use crate::metrics::Metrics;

pub use push::ReceiverState;

/// What the operational endpoints need.
pub struct OpsState {
    /// The broker connection, for readiness.
    pub broker: Broker,
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// The token keeper, when this process runs the worker.
    pub keeper: Option<TokenKeeper>,
}

/// Copies a request's URI and headers out of the connection's read buffer.
///
/// actix parses them without copying, as slices of the buffer the request arrived in (which
/// also holds the first body bytes read with it), and keeps up to 128 finished requests per
/// listener thread for reuse, last in first out. Without this copy, a burst of large bodies
/// (a slow-client flood) leaves those pooled requests pinning about 100 KiB each for good,
/// since ordinary traffic afterwards only ever reuses the top few. The copy costs a few small
/// allocations per request.
pub fn unpin_from_read_buffer(req: &mut actix_web::dev::ServiceRequest) {
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    let head = req.head_mut();
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in head.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    head.headers = headers;
    if let Ok(uri) = head.uri.to_string().parse::<actix_web::http::Uri>() {
        head.uri = uri.clone();
        req.match_info_mut().get_mut().update(&uri);
    }
}

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Registers the push endpoint at `path`.
pub fn push_routes(path: &str) -> impl FnOnce(&mut web::ServiceConfig) + '_ {
    move |cfg| {
        cfg.route(path, web::post().to(push::receive));
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 0, "msg": "ok"}))
}

impl OpsState {
    /// Ready, or the code and reason `/readyz` answers.
    fn readiness(&self) -> Result<(), (u32, String)> {
        if !self.broker.is_ready() {
            return Err((50300, "broker not connected".into()));
        }
        // Before the token: with a stranger leading, no token comes, and this is why.
        if let Some(queue) = self.keeper.as_ref().and_then(|k| k.foreign_leader()) {
            return Err((
                50302,
                format!(
                    "no relay leads: the active consumer of {queue} is not a weibo-relay \
                     (no sealed leader heartbeat); no token refresh, no call permits"
                ),
            ));
        }
        if self.keeper.as_ref().is_some_and(|k| !k.is_ready()) {
            return Err((50301, "no access_token yet for every merchant".into()));
        }
        Ok(())
    }
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    match state.readiness() {
        Ok(()) => HttpResponse::Ok().json(json!({"code": 0, "msg": "ready"})),
        Err((code, msg)) => {
            HttpResponse::ServiceUnavailable().json(json!({"code": code, "msg": msg}))
        }
    }
}

async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    state
        .metrics
        .set_readiness(state.broker.is_ready(), state.readiness().is_ok());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
