//! The gateway's listener: `POST /v1/platform/<group>/<name>`, thin handler, its own server.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, Data, Path, Payload};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use tokio::time::Instant;

use super::answer::success;
use super::clients::bearer;
use super::request::{parse, read_body};
use super::{Gateway, GatewayError, OTHER};
use crate::clock::Later;
use crate::settings::GatewayClient;
use crate::trace::TraceContext;

/// How long a client may take to send a request's head.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Threads serving the gateway: its work is waiting on the platform, not computing.
const WORKERS: usize = 2;

/// The gateway's routes, on an app of its own: another method on the path is answered as
/// any other path is.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/platform/{group}/{name}")
            .route(web::post().to(call))
            .default_service(web::to(not_found)),
    );
}

/// The gateway's server on `listener`, serving once polled; `connections` at most.
pub fn serve(
    listener: TcpListener,
    gateway: Data<Gateway>,
    connections: usize,
    shutdown_timeout: u64,
) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(gateway.clone())
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .workers(WORKERS)
    .max_connections(connections.div_ceil(WORKERS))
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .run())
}

/// Any other path or method.
async fn not_found() -> HttpResponse {
    GatewayError::NotFound.error_response()
}

/// `POST /v1/platform/<group>/<name>`: counted, audited when it writes, answered with the
/// trace it ran in.
#[tracing::instrument(name = "gateway", skip_all, fields(trace_id))]
async fn call(
    gateway: Data<Gateway>,
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
) -> HttpResponse {
    let parent = TraceContext::from_headers(req.headers());
    let trace = TraceContext::next_hop(parent.as_ref());
    tracing::Span::current().record("trace_id", trace.trace_id().as_str());
    let (group, name) = path.into_inner();
    let interface = format!("{group}/{name}");
    let deadline = Instant::now().later(gateway.deadline);
    let mut client = None;
    let answered = gateway
        .handle(&req, &interface, payload, deadline, &mut client, &trace)
        .await;
    let outcome = match &answered {
        Ok(_) => "success",
        Err(error) => error.relay().outcome,
    };
    gateway.metrics.call(
        client.map_or(OTHER, |c| c.name.as_str()),
        gateway.interface_label(&interface),
        outcome,
    );
    let mut response = answered.unwrap_or_else(|error| error.error_response());
    if let Ok(value) = trace.traceparent().parse() {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("traceparent"),
            value,
        );
    }
    response
}

impl Gateway {
    /// The checks in the contract's order, then the call.
    async fn handle<'g>(
        &'g self,
        req: &HttpRequest,
        interface: &str,
        payload: Payload,
        deadline: Instant,
        caller: &mut Option<&'g GatewayClient>,
        trace: &TraceContext,
    ) -> Result<HttpResponse, GatewayError> {
        let key = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or(GatewayError::Unauthorized)?;
        let client = self
            .clients
            .authenticate(key)
            .ok_or(GatewayError::Unauthorized)?;
        *caller = Some(client);
        if !self.clients.admit(client) {
            return Err(GatewayError::TooManyRequests);
        }
        if !req.query_string().is_empty() {
            return Err(GatewayError::BadRequest(
                "no query string: parameters go in the body, the key in the Authorization header"
                    .into(),
            ));
        }
        let spec = *self
            .interfaces
            .get(interface)
            .ok_or(GatewayError::NotFound)?;
        if !client.allows_interface(interface) {
            return Err(GatewayError::Forbidden(
                "interface not allowed for this client".into(),
            ));
        }
        if !is_json(req) {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = read_body(payload, length, self.max_body_bytes, self.body_timeout).await?;
        let request = parse(&body, self.max_params)?;
        if !client.allows_appid(request.appid.as_str()) {
            return Err(GatewayError::Forbidden(
                "appid not allowed for this client".into(),
            ));
        }
        let merchant = self
            .merchants
            .get(&request.appid)
            .ok_or_else(|| GatewayError::Forbidden("appid is no merchant of this relay".into()))?;
        let done = self
            .perform(merchant, interface, spec, &request.params, deadline)
            .await;
        if spec.writes {
            let (outcome, code) = match &done {
                Ok(done) => ("success", Some(done.code)),
                Err(error) => (error.relay().outcome, error.platform_code()),
            };
            // The audit line: who wrote what for whom, and how it ended; never a secret.
            tracing::info!(
                target: "weibo_relay::gateway::audit",
                client = %client.name,
                interface,
                appid = %request.appid,
                outcome,
                code,
                trace_id = %trace.trace_id(),
                "gateway write"
            );
        }
        let done = done?;
        Ok(success(done.attempts, done.code, done.msg, done.data))
    }
}

/// `application/json`, with parameters or not.
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}
