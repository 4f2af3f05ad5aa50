//! Span export over OTLP/HTTP (cargo feature `otel`, off by default): the relay's spans join
//! the traces its `traceparent` headers continue. Configured by OpenTelemetry's own variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`);
//! nothing is exported unless an endpoint is set.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceContext;

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct Exporter(SdkTracerProvider);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("weibo-relay: spans not all exported: {error}");
        }
    }
}

/// The tracing layer exporting spans, and its exporter; `None` when no endpoint is set or
/// the exporter cannot be built (said once on stderr: logging is not up yet).
pub fn layer<S>() -> Option<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Exporter,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !configured {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("weibo-relay: OTLP span export off: {error}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "weibo-relay".into()),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("weibo-relay");
    Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Exporter(provider),
    ))
}

/// A span whose exported parent is `parent` (a root span without one).
pub fn child_span(parent: Option<&TraceContext>) -> tracing::Span {
    let span = tracing::info_span!("request");
    if let Some(parent) = parent {
        let _ = span.set_parent(remote(parent));
    }
    span
}

/// Makes `hop` carry the trace and span ids of `span`, when it is exported.
pub fn adopt(span: &tracing::Span, hop: &mut TraceContext) {
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        hop.trace_id = ids.trace_id().to_bytes();
        hop.span_id = ids.span_id().to_bytes();
    }
}

/// Sets `parent` as the exported parent of `span`, which must not have been entered yet.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    let _ = span.set_parent(remote(parent));
}

fn remote(parent: &TraceContext) -> Context {
    let state = parent
        .state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        state,
    ))
}
