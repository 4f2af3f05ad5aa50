//! The HTTP surface: pushes, health, readiness, metrics.

mod log_limit;
mod push;

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::amqp::Broker;
use crate::metrics::Metrics;
use crate::token::TokenKeeper;

pub use log_limit::LogLimit;
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

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    if !state.broker.is_ready() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"code": 50300, "msg": "broker not connected"}));
    }
    if state.keeper.as_ref().is_some_and(|k| !k.is_ready()) {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"code": 50301, "msg": "no access_token yet for every merchant"}));
    }
    HttpResponse::Ok().json(json!({"code": 0, "msg": "ready"}))
}

async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
