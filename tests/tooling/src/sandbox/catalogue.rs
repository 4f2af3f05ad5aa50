//! Every capability interface of the catalogue (the relay's `[gateway.interfaces]` defaults):
//! method, signature and token checked on each, a small state model where a test needs one
//! ([`super::goods`]), an echo of the parameters elsewhere; calls counted per interface, on
//! arrival (`received`, before any fault) and by answer code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};
use weibo_relay::settings::{InterfaceSpec, PlatformMethod};

use super::faults::Injected;
use super::platform::{injected_message, parse, refusal, server_error, BAD_PARAMETER};
use super::state::SandboxState;

/// Wrong HTTP method for the interface.
pub const METHOD_NOT_ALLOWED: i64 = 40005;
/// No such interface.
pub const NO_SUCH_INTERFACE: i64 = 40004;
/// How long a hung call waits before answering (the caller gives up long before).
const HANG: Duration = Duration::from_secs(3600);

/// The interfaces the sandbox speaks: the relay's default catalogue.
pub struct Catalogue(BTreeMap<String, InterfaceSpec>);

impl Catalogue {
    /// The relay's built-in catalogue.
    pub fn defaults() -> Self {
        let settings =
            weibo_relay::settings::Settings::from_toml("").expect("the relay's defaults load");
        Self(settings.gateway.interfaces)
    }
}

/// `GET|POST {api_base}/{group}/{name}`
pub async fn interface(
    state: Data<SandboxState>,
    catalogue: Data<Catalogue>,
    path: Path<(String, String)>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let (group, name) = path.into_inner();
    let interface = format!("{group}/{name}");
    let params = if req.method() == Method::GET {
        parse(req.query_string().as_bytes())
    } else {
        parse(&body)
    };
    let Some(spec) = catalogue.0.get(&interface).copied() else {
        return HttpResponse::NotFound()
            .json(json!({"code": NO_SUCH_INTERFACE, "msg": "no such interface"}));
    };
    let roll: f64 = rand::random();
    let (latency, injected, envelope) = {
        let mut world = state.lock();
        world.record(&name, &params);
        world.arrived();
        world.receive(&name);
        (
            world.faults.latency(),
            world.faults.order_call(Instant::now(), roll),
            world.faults.faults.error_envelope,
        )
    };
    tokio::time::sleep(latency).await;
    let answer = match injected {
        Some(Injected::ServerError(status)) => {
            state.lock().count(&name, format!("http_{status}"));
            return server_error(status);
        }
        Some(Injected::Hang) => {
            // Received, never answered: a caller's time-out ends it (and drops this).
            tokio::time::sleep(HANG).await;
            return server_error(504);
        }
        Some(Injected::Redirect) => {
            state.lock().count(&name, "http_302");
            return HttpResponse::Found()
                .insert_header(("Location", "http://attacker.invalid/steal"))
                .finish();
        }
        Some(Injected::Code(code)) => Err((code, injected_message(code).to_owned())),
        None => process(&state, &interface, spec, req.method(), &params),
    };
    let code = answer.as_ref().map_or_else(|(code, _)| *code, |_| 0);
    state.lock().count(&name, code);
    match answer {
        Ok(data) => HttpResponse::Ok().json(json!({"code": 0, "msg": "success", "data": data})),
        Err((code, msg)) if code == METHOD_NOT_ALLOWED => {
            HttpResponse::build(StatusCode::METHOD_NOT_ALLOWED)
                .json(json!({"code": code, "msg": msg}))
        }
        Err((code, msg)) => refusal(code, &msg, envelope, &interface),
    }
}

/// Checks in the platform's order: method, parameters, signature, token; then the model.
fn process(
    state: &SandboxState,
    interface: &str,
    spec: InterfaceSpec,
    method: &Method,
    params: &BTreeMap<String, String>,
) -> Result<Value, (i64, String)> {
    let expected = match spec.method {
        PlatformMethod::Get => Method::GET,
        PlatformMethod::Post => Method::POST,
    };
    if *method != expected {
        return Err((
            METHOD_NOT_ALLOWED,
            format!("{interface} takes {expected}, not {method}"),
        ));
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    for key in ["appid", "timestamp", "sign_type", "sign", "access_token"] {
        if get(key).trim().is_empty() {
            return Err((BAD_PARAMETER, format!("missing parameter {key}")));
        }
    }
    if get("sign_type") != "md5" {
        return Err((BAD_PARAMETER, "sign_type must be md5".into()));
    }
    let appid = get("appid");
    super::platform::signed_by(state, params)?;
    let mut world = state.lock();
    world
        .tokens
        .check(appid, get("access_token"), Instant::now())
        .map_err(|code| (code, "invalid_access_token".to_owned()))?;
    let world = &mut *world;
    if let Some(answer) = world.goods.answer(&world.orders, appid, interface, params) {
        return answer;
    }
    // Elsewhere an echo of what arrived, without what only the relay adds.
    let echoed: BTreeMap<&String, &String> = params
        .iter()
        .filter(|(k, _)| !["sign", "access_token", "sign_type", "timestamp"].contains(&k.as_str()))
        .collect();
    Ok(json!({"interface": interface, "params": echoed}))
}
