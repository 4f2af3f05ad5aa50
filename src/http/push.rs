//! `POST {push.path}`: thin glue from HTTP to the push pipeline, and its answers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::json;
use tracing::field::Empty;

use crate::event::EventId;
use crate::ids::AppId;
use crate::metrics::Label;
use crate::metrics::Metrics;
use crate::push::{Body, ContentKind, PushError, PushRelay, Stored, UnverifiedPush};
use crate::settings::Merchants;
use crate::telemetry::LogLimit;
use crate::trace::{TraceContext, TRACEPARENT, TRACESTATE};

/// What the push handler needs, shared by every HTTP worker.
pub struct ReceiverState {
    /// Configured merchants (in provider mode, the provider: it signs every push).
    pub merchants: Merchants,
    /// Provider mode: which merchant a push is for, by its signed uid.
    pub provider: Option<crate::provider::run::ProviderPushes>,
    /// Dedup and publish.
    pub relay: PushRelay,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `http.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `http.body_timeout_ms`.
    pub body_timeout: Duration,
    /// `push.max_skew_secs`.
    pub max_skew: Duration,
    /// Caps refusal log lines (anyone can send bad pushes).
    pub refusal_log: LogLimit,
    /// `push.success_body`, sent with 200 for a stored push.
    pub success_body: web::Bytes,
    /// `push.success_content_type`.
    pub success_content_type: String,
}

impl ResponseError for PushError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::BadSignature | Self::Stale { .. } => StatusCode::UNAUTHORIZED,
            Self::UnknownMerchant(_) | Self::UnknownUid(_) => StatusCode::FORBIDDEN,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // The platform reads `code`; the numbers echo the platform's own 4xxxx style.
        let code = match self {
            Self::Malformed(_) => 40002,
            Self::BadSignature => 40001,
            Self::Stale { .. } => 40003,
            Self::UnknownMerchant(_) => 40301,
            Self::UnknownUid(_) => 40302,
            Self::BodyTimeout => 40800,
            Self::TooLarge(_) => 41300,
            Self::UnsupportedMediaType(_) => 41500,
            Self::NotStored(_) => 50300,
        };
        let msg = match self {
            Self::NotStored(_) => "event not stored, retry later".to_owned(),
            other => other.to_string(),
        };
        HttpResponse::build(self.status_code()).json(json!({"code": code, "msg": msg}))
    }
}

/// What a push told of itself before it failed, for the refusal's log line.
#[derive(Default)]
struct Seen {
    appid: Option<AppId>,
    event_id: Option<EventId>,
}

/// Receives one push: parse, verify, store, answer.
///
/// The span is at debug level unless spans are exported (`otel`): a span per push, with its
/// fields formatted as they are recorded, was about a tenth of the receiver's CPU (BENCHMARKS.md).
/// Refusals and failures log their appid and event id themselves.
#[cfg_attr(
    not(feature = "otel"),
    tracing::instrument(
        level = "debug",
        name = "push",
        skip_all,
        fields(appid = Empty, r#type = Empty, event_id = Empty, sub_order_id = Empty, sign_form = Empty, outcome = Empty, trace_id = Empty)
    )
)]
#[cfg_attr(
    feature = "otel",
    tracing::instrument(
        name = "push",
        skip_all,
        fields(appid = Empty, r#type = Empty, event_id = Empty, sub_order_id = Empty, sign_form = Empty, outcome = Empty, trace_id = Empty)
    )
)]
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ReceiverState>,
) -> Result<HttpResponse, PushError> {
    let _in_flight = state.metrics.push_started();
    let mut seen = Seen::default();
    let result = handle(&req, payload, &state, &mut seen).await;
    let span = tracing::Span::current();
    match &result {
        Ok(stored) => {
            span.record("outcome", stored.outcome().as_str());
            state.metrics.push(stored.outcome());
            // Debug, not info: at thousands of pushes a second one line each was a tenth of
            // the receiver's CPU (BENCHMARKS.md); the outcome counters keep the totals, and
            // refusals and failures still log at warn and error.
            tracing::debug!("push stored");
        }
        Err(error) => {
            span.record("outcome", error.outcome().as_str());
            state.metrics.push(error.outcome());
            let appid = seen.appid.as_ref().map_or("-", AppId::as_str);
            let event_id = seen.event_id.map(|id| id.to_string());
            let event_id = event_id.as_deref().unwrap_or("-");
            match error {
                PushError::NotStored(cause) => {
                    tracing::error!(%cause, appid, event_id, "push not stored");
                }
                _ => {
                    if let Some(suppressed) = state.refusal_log.admit() {
                        tracing::warn!(%error, suppressed, appid, event_id, "push refused");
                    }
                }
            }
        }
    }
    result.map(|_| {
        HttpResponse::Ok()
            .content_type(state.success_content_type.as_str())
            .body(state.success_body.clone())
    })
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ReceiverState,
    seen: &mut Seen,
) -> Result<Stored, PushError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let kind = ContentKind::from_header(content_type)?;
    let bytes = read_body(req, payload, state.max_body_bytes, state.body_timeout).await?;
    let push = UnverifiedPush::parse(Body::parse(kind, &bytes)?)?;
    let span = tracing::Span::current();
    span.record("appid", push.appid().as_str());
    span.record("type", push.type_code());
    seen.appid = Some(push.appid().clone());
    let push = push.verify(
        &state.merchants,
        crate::clock::unix_secs() as i64,
        state.max_skew,
    )?;
    let push = match &state.provider {
        Some(provider) => provider.name_merchant(push)?,
        None => push,
    };
    span.record("event_id", tracing::field::display(push.event_id()));
    seen.event_id = Some(push.event_id());
    span.record("sign_form", push.form().as_str());
    if let Some(id) = push.sub_order_id() {
        span.record("sub_order_id", id.as_str());
    }
    tracing::debug!(
        recharge_account = push.masked_data_field("recharge_account"),
        contact_phone = push.masked_data_field("contact_phone"),
        "push verified"
    );
    // The caller's trace (the platform's, or a proxy's) continues into the event; without
    // one, the event starts a trace of its own.
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let parent = header(TRACEPARENT).and_then(|tp| TraceContext::parse(tp, header(TRACESTATE)));
    let mut trace = TraceContext::next_hop(parent.as_ref());
    trace.adopt_span_ids(&span);
    // Only for a span that records: the id's text would otherwise be made for nothing.
    if !span.is_disabled() {
        span.record("trace_id", trace.trace_id().as_str());
    }
    state.relay.store(&push, &trace).await
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<web::Bytes, PushError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(PushError::TooLarge(limit));
    }
    let read = async {
        // Sized from the declared length (already checked against the limit), so a body is
        // not copied through doubling buffers that end up twice its size.
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| PushError::Malformed(format!("body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(PushError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(PushError::BodyTimeout))
}
