//! The sandbox's admin API: orders, counters, recorded requests, faults, token revocation.
//! Unauthenticated: the sandbox is a test tool bound to loopback.

use actix_web::web::{Data, Json, Path};
use actix_web::HttpResponse;
use serde::Deserialize;
use serde_json::json;
use weibo_relay::clock::Later;

use super::faults::Faults;
use super::orders::PAID;
use super::state::SandboxState;
use super::token_book::{EXPIRED, INVALID};

/// Most orders one request may create.
const MAX_CREATE: usize = 10_000;

/// `POST /admin/orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrders {
    appid: String,
    #[serde(default = "one")]
    count: usize,
    #[serde(default = "paid")]
    state_code: u16,
}

fn one() -> usize {
    1
}

fn paid() -> u16 {
    PAID
}

/// `POST /admin/orders` -> `{"sub_order_ids":[..]}`
pub async fn create_orders(state: Data<SandboxState>, body: Json<CreateOrders>) -> HttpResponse {
    if state.merchant(&body.appid).is_none() {
        return bad_request(&format!("unknown appid {}", body.appid));
    }
    if body.count == 0 || body.count > MAX_CREATE {
        return bad_request(&format!("count must be 1 to {MAX_CREATE}"));
    }
    let ids = state
        .lock()
        .orders
        .create(&body.appid, body.count, body.state_code);
    HttpResponse::Ok().json(json!({"sub_order_ids": ids}))
}

/// `GET /admin/orders/{appid}/{sub_order_id}`
pub async fn get_order(state: Data<SandboxState>, path: Path<(String, String)>) -> HttpResponse {
    let (appid, id) = path.into_inner();
    match state.lock().orders.get(&appid, &id) {
        Some(order) => HttpResponse::Ok().json(order),
        None => HttpResponse::NotFound().json(json!({"code": 70101, "msg": "not found"})),
    }
}

/// `GET /admin/counters` -> calls by endpoint and code, tokens issued by appid.
pub async fn counters(state: Data<SandboxState>) -> HttpResponse {
    let world = state.lock();
    HttpResponse::Ok().json(json!({
        "calls": world.calls,
        "received": world.received,
        "tokens_issued": world.tokens.issued(),
    }))
}

/// `GET /admin/timeline` -> `{"order_calls_ms":[..]}`: when each order call arrived, in
/// milliseconds since the sandbox started (to check a deployment's rate from outside).
pub async fn timeline(state: Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"order_calls_ms": state.lock().timeline}))
}

/// `POST /admin/outage` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    secs: u64,
}

/// `POST /admin/outage {"secs":N}`: every push is given up for N seconds from now (0 ends an
/// outage).
pub async fn outage(state: Data<SandboxState>, body: Json<Outage>) -> HttpResponse {
    let until = std::time::Instant::now().later(std::time::Duration::from_secs(body.secs));
    state.lock().outage_until = (body.secs > 0).then_some(until);
    HttpResponse::Ok().json(json!({"secs": body.secs}))
}

/// `GET /admin/requests` -> the latest platform requests, oldest first.
pub async fn requests(state: Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.lock().requests)
}

/// `GET /admin/faults`
pub async fn get_faults(state: Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.lock().faults.faults)
}

/// `POST /admin/faults`: replaces the fault settings, except `error_envelope` when the body
/// leaves it out: that is how the platform speaks (`--error-envelope`), not a passing fault,
/// and clearing the faults must not change it.
pub async fn set_faults(state: Data<SandboxState>, body: Json<serde_json::Value>) -> HttpResponse {
    let body = body.into_inner();
    let keep_envelope = body.get("error_envelope").is_none();
    let mut faults: Faults = match serde_json::from_value(body) {
        Ok(faults) => faults,
        Err(e) => return bad_request(&e.to_string()),
    };
    if let Err(reason) = validate(&faults) {
        return bad_request(reason);
    }
    let mut world = state.lock();
    if keep_envelope {
        faults.error_envelope = world.faults.faults.error_envelope;
    }
    world.faults.faults = faults.clone();
    HttpResponse::Ok().json(faults)
}

/// Checks fault settings from the admin API or the command line.
pub fn validate(faults: &Faults) -> Result<(), &'static str> {
    if !(500..=599).contains(&faults.error_status) {
        return Err("error_status must be a 5xx status");
    }
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return Err("error_rate must be between 0 and 1");
    }
    if ![10022, 10023, 10024].contains(&faults.rate_limit_code) {
        return Err("rate_limit_code must be 10022, 10023 or 10024");
    }
    if faults.code == 0 {
        return Err("code must not be 0 (that is success)");
    }
    Ok(())
}

/// `POST /admin/tokens/revoke` body: which merchant (all when absent), and the code its
/// current token gets from now on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    #[serde(default)]
    appid: Option<String>,
    code: i64,
}

/// `POST /admin/tokens/revoke` -> `{"revoked":n}`
pub async fn revoke_tokens(state: Data<SandboxState>, body: Json<Revoke>) -> HttpResponse {
    if ![EXPIRED, INVALID].contains(&body.code) {
        return bad_request("code must be 21327 or 21332");
    }
    let revoked = state.lock().tokens.revoke(body.appid.as_deref(), body.code);
    HttpResponse::Ok().json(json!({"revoked": revoked}))
}

fn bad_request(msg: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"code": 40002, "msg": msg}))
}
