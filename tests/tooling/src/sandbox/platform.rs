//! The platform's own endpoints: token (spec section 3) and order interfaces (section 4).

use std::collections::BTreeMap;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::faults::{ErrorEnvelope, Injected};
use super::orders::Order;
use super::state::SandboxState;
use weibo_relay::signature;

/// Bad signature.
pub const BAD_SIGNATURE: i64 = 40001;
/// Missing or invalid parameter.
pub const BAD_PARAMETER: i64 = 40002;

/// The three order interfaces.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Finish,
    Close,
    GetSub,
    GetSubList,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Finish => "retailerFinishSub",
            Self::Close => "retailerCloseSub",
            Self::GetSub => "retailerGetSub",
            Self::GetSubList => "retailerGetSubList",
        }
    }

    fn required(self) -> &'static [&'static str] {
        // Close needs everything the others need, and the reason.
        const CLOSE: &[&str] = &[
            "appid",
            "sub_order_id",
            "timestamp",
            "sign_type",
            "sign",
            "access_token",
            "reason",
        ];
        const LIST: &[&str] = &[
            "appid",
            "start_time",
            "end_time",
            "page",
            "page_size",
            "timestamp",
            "sign_type",
            "sign",
            "access_token",
        ];
        match self {
            Self::Close => CLOSE,
            Self::Finish | Self::GetSub => &CLOSE[..CLOSE.len() - 1],
            Self::GetSubList => LIST,
        }
    }
}

/// A refusal: code and message.
pub(super) type Refusal = (i64, String);

/// `GET /oauth2/shop/authorize`
pub async fn authorize(state: Data<SandboxState>, req: HttpRequest) -> HttpResponse {
    const NAME: &str = "authorize";
    let params = parse(req.query_string().as_bytes());
    let (latency, injected, envelope) = {
        let mut world = state.lock();
        world.record(NAME, &params);
        (
            world.faults.latency(),
            world.faults.token_call(),
            world.faults.faults.error_envelope,
        )
    };
    tokio::time::sleep(latency).await;
    if let Some(Injected::ServerError(status)) = injected {
        state.lock().count(NAME, format!("http_{status}"));
        return server_error(status);
    }
    let answer = issue(&state, &params);
    let code = answer.as_ref().map_or_else(|(code, _)| *code, |_| 0);
    state.lock().count(NAME, code);
    match answer {
        Ok(body) => HttpResponse::Ok().json(body),
        // The token endpoint answers errors in the OAuth2 shape in Weibo's envelope mode.
        Err((code, msg)) if envelope == ErrorEnvelope::Weibo => HttpResponse::BadRequest().json(
            json!({"error": "invalid_request", "error_code": code, "error_description": msg}),
        ),
        Err((code, msg)) => refusal(code, &msg, envelope, NAME),
    }
}

fn issue(state: &SandboxState, params: &BTreeMap<String, String>) -> Result<Value, Refusal> {
    let get = |k: &str| required(params, k);
    let client_id = get("client_id")?;
    let (timestamp, nonce, sign) = (get("timestamp")?, get("nonce")?, get("sign")?);
    let merchant = state
        .merchant_by_client_id(client_id)
        .ok_or_else(|| (BAD_PARAMETER, format!("unknown client_id {client_id}")))?;
    let expected = signature::token_sign(
        client_id,
        merchant.uid(),
        timestamp,
        nonce,
        merchant.client_secret().expose_secret(),
    );
    let same: bool = expected
        .as_bytes()
        .ct_eq(sign.to_ascii_lowercase().as_bytes())
        .into();
    if !same {
        return Err((BAD_SIGNATURE, "bad signature".into()));
    }
    let (token, ttl) = state
        .lock()
        .tokens
        .issue(merchant.appid().as_str(), Instant::now());
    // The platform sends uid as a number when it is one.
    let uid = merchant
        .uid()
        .parse::<u64>()
        .map_or_else(|_| json!(merchant.uid()), |n| json!(n));
    Ok(json!({
        "client_id": client_id,
        "uid": uid,
        "access_token": token,
        "issued_at": weibo_relay::clock::unix_secs(),
        "expires_in": ttl.as_secs(),
    }))
}

/// `POST {api_base}/order/retailerFinishSub`
pub async fn finish(state: Data<SandboxState>, body: Bytes) -> HttpResponse {
    order_call(&state, Endpoint::Finish, parse(&body)).await
}

/// `POST {api_base}/order/retailerCloseSub`
pub async fn close(state: Data<SandboxState>, body: Bytes) -> HttpResponse {
    order_call(&state, Endpoint::Close, parse(&body)).await
}

/// `GET {api_base}/order/retailerGetSub`
pub async fn get_sub(state: Data<SandboxState>, req: HttpRequest) -> HttpResponse {
    order_call(
        &state,
        Endpoint::GetSub,
        parse(req.query_string().as_bytes()),
    )
    .await
}

async fn order_call(
    state: &SandboxState,
    endpoint: Endpoint,
    params: BTreeMap<String, String>,
) -> HttpResponse {
    let roll: f64 = rand::random();
    let (latency, injected, envelope) = {
        let mut world = state.lock();
        world.record(endpoint.name(), &params);
        world.arrived();
        world.receive(endpoint.name());
        (
            world.faults.latency(),
            world.faults.order_call(Instant::now(), roll),
            world.faults.faults.error_envelope,
        )
    };
    tokio::time::sleep(latency).await;
    let answer = match injected {
        Some(Injected::ServerError(status)) => {
            state
                .lock()
                .count(endpoint.name(), format!("http_{status}"));
            return server_error(status);
        }
        Some(Injected::Code(code)) => Err((code, injected_message(code).to_owned())),
        Some(Injected::Hang | Injected::Redirect) => {
            // The catalogue's faults; the order interfaces answer them as a 503.
            state.lock().count(endpoint.name(), "http_503");
            return server_error(503);
        }
        None => process(state, endpoint, &params),
    };
    let code = answer.as_ref().map_or_else(|(code, _)| *code, |_| 0);
    state.lock().count(endpoint.name(), code);
    match answer {
        Ok(data) => HttpResponse::Ok().json(json!({"code": 0, "msg": "success", "data": data})),
        Err((code, msg)) => refusal(code, &msg, envelope, &format!("order/{}", endpoint.name())),
    }
}

/// `GET {api_base}/order/retailerGetSubList`
pub async fn get_sub_list(state: Data<SandboxState>, req: HttpRequest) -> HttpResponse {
    order_call(
        &state,
        Endpoint::GetSubList,
        parse(req.query_string().as_bytes()),
    )
    .await
}

/// Checks in the platform's order: parameters, signature, token, then the order itself.
fn process(
    state: &SandboxState,
    endpoint: Endpoint,
    params: &BTreeMap<String, String>,
) -> Result<Value, Refusal> {
    for key in endpoint.required() {
        required(params, key)?;
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if get("sign_type") != "md5" {
        return Err((BAD_PARAMETER, "sign_type must be md5".into()));
    }
    if get("timestamp").parse::<i64>().is_err() {
        return Err((BAD_PARAMETER, "timestamp must be unix seconds".into()));
    }
    let appid = get("appid");
    signed_by(state, params)?;
    let checked = state
        .lock()
        .tokens
        .check(appid, get("access_token"), Instant::now());
    let mut caller = None;
    if let Err(code) = checked {
        // Not the merchant's own token: perhaps one a merchant granted the provider (a
        // provider signs with its own appid and key, and calls with each merchant's token).
        match state.provider_call(get("access_token")) {
            Some(Ok(uid)) => caller = Some(uid),
            Some(Err(expired @ super::token_book::EXPIRED)) => {
                return Err((expired, token_message(expired).to_owned()))
            }
            _ => return Err((code, token_message(code).to_owned())),
        }
    }
    let mut world = state.lock();
    let id = get("sub_order_id");
    let order = match endpoint {
        Endpoint::Finish => world.orders.finish(appid, id),
        Endpoint::Close => world.orders.close(appid, id, get("reason")),
        Endpoint::GetSub => world.orders.get(appid, id).ok_or(super::orders::NOT_FOUND),
        Endpoint::GetSubList => return super::list::page(&world, appid, caller.as_deref(), params),
    }
    .map_err(|code| (code, order_message(code).to_owned()))?;
    Ok(order_data(endpoint, order))
}

fn order_data(endpoint: Endpoint, order: &Order) -> Value {
    match endpoint {
        Endpoint::GetSub => json!({
            "sub_order_id": order.sub_order_id,
            "state_code": order.state_code,
            "expect_finish_time": order.expect_finish_time,
            "finish_type": order.finish_type,
            "is_timeout": order.is_timeout,
            "contact_phone": order.contact_phone,
        }),
        Endpoint::Finish | Endpoint::Close | Endpoint::GetSubList => json!({
            "sub_order_id": order.sub_order_id,
            "state_code": order.state_code,
        }),
    }
}

/// The merchant whose appid `params` name, when they carry its signature: unknown appid
/// and bad signature refused as the platform does (every interface checks this way).
pub(super) fn signed_by<'s>(
    state: &'s SandboxState,
    params: &BTreeMap<String, String>,
) -> Result<&'s weibo_relay::settings::Merchant, Refusal> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let appid = get("appid");
    let merchant = state
        .merchant(appid)
        .ok_or_else(|| (BAD_PARAMETER, format!("unknown appid {appid}")))?;
    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    if !signature::verify(pairs, merchant.sign_key().expose_secret(), get("sign")) {
        return Err((BAD_SIGNATURE, "bad signature".into()));
    }
    Ok(merchant)
}

fn required<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, Refusal> {
    params
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| (BAD_PARAMETER, format!("missing parameter {key}")))
}

fn token_message(code: i64) -> &'static str {
    match code {
        super::token_book::EXPIRED => "expired_token",
        _ => "invalid_access_token",
    }
}

fn order_message(code: i64) -> &'static str {
    use super::orders::*;
    match code {
        NOT_FOUND => "sub order not found",
        ALREADY_FINISHED => "sub order already finished",
        ALREADY_CLOSED => "sub order already closed",
        _ => "sub order state does not allow this action",
    }
}

pub(super) fn injected_message(code: i64) -> &'static str {
    match code {
        10022..=10024 => "user requests out of rate limit!",
        super::faults::SERVICE_UNAVAILABLE => "service unavailable",
        _ => "injected answer",
    }
}

/// Codes Weibo's API gateway answers itself, before the e-commerce service is reached.
fn from_the_gateway(code: i64) -> bool {
    matches!(code, 10001..=10024 | 21300..=21399)
}

/// A refusal. In our model every one is the e-commerce envelope, its status following the kind
/// of error; in Weibo's mode the gateway's own errors come in its envelope, code as a string,
/// at HTTP 400 (token) or 403 (rate, system), as the real gateway answers them.
pub(super) fn refusal(
    code: i64,
    msg: &str,
    envelope: ErrorEnvelope,
    interface: &str,
) -> HttpResponse {
    if envelope == ErrorEnvelope::Weibo && from_the_gateway(code) {
        let status = if (21300..=21399).contains(&code) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        return HttpResponse::build(status).json(json!({
            "request": format!("/2/proxy/eshop/open/{interface}"),
            "error_code": code.to_string(),
            "error": msg,
        }));
    }
    let status = match code {
        BAD_SIGNATURE | BAD_PARAMETER => StatusCode::BAD_REQUEST,
        super::token_book::EXPIRED | super::token_book::INVALID => StatusCode::UNAUTHORIZED,
        10022..=10024 => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::OK,
    };
    HttpResponse::build(status).json(json!({"code": code, "msg": msg, "data": {}}))
}

/// An injected failure: like a broken gateway, not the platform's JSON.
pub(super) fn server_error(status: u16) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    HttpResponse::build(status)
        .content_type("text/html")
        .body("<html><body>injected failure</body></html>")
}

pub(super) fn parse(raw: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw).into_owned().collect()
}
