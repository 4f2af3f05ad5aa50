//! W3C trace context (`traceparent`, `tracestate`), carried from a push into its event and
//! from a command into the worker's spans and its outcome, as OpenTelemetry's messaging
//! conventions do: each hop keeps the trace id and names itself as the parent of the next.
//!
//! The values come from strangers (a push's HTTP headers, a producer's AMQP headers), so they
//! are parsed strictly: anything that is not a valid version-00 `traceparent` starts a new
//! trace, and a `tracestate` is kept only beside a valid parent and within the W3C limits.

#[cfg(feature = "otel")]
pub mod otel;

use std::fmt;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

/// The header (HTTP and AMQP) holding the parent.
pub const TRACEPARENT: &str = "traceparent";
/// The header holding vendor state.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` kept (the W3C limit is 512 characters).
const MAX_TRACESTATE: usize = 512;
/// Sampled: a trace the relay starts is one a tracing backend may record.
const SAMPLED: u8 = 0x01;

/// One hop's trace context: the trace, this hop's span id, flags and vendor state.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` (and its `tracestate`); `None` for anything invalid, so the
    /// caller starts a new trace rather than trusting it.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
        let bytes = traceparent.as_bytes();
        if bytes.len() != 55 {
            return None;
        }
        let lower_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let (version, trace, parent, flags) =
            (&bytes[0..2], &bytes[3..35], &bytes[36..52], &bytes[53..55]);
        if [bytes[2], bytes[35], bytes[52]] != [b'-'; 3]
            || version != b"00"
            || ![version, trace, parent, flags].iter().all(|p| lower_hex(p))
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(parent, &mut span_id).ok()?;
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_TRACESTATE
                    && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
            })
            .map(str::to_owned);
        Some(Self {
            trace_id,
            span_id,
            flags: flag[0],
            state,
        })
    }

    /// The context an incoming message carries in its AMQP headers, if valid.
    pub fn from_amqp(properties: &BasicProperties) -> Option<Self> {
        let headers = properties.headers().as_ref()?.inner();
        let text = |key: &str| match headers.get(key) {
            Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        };
        Self::parse(text(TRACEPARENT)?, text(TRACESTATE))
    }

    /// The context an HTTP request carries in its `traceparent` and `tracestate`, if valid.
    pub fn from_headers(headers: &actix_web::http::header::HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self::parse(text(TRACEPARENT)?, text(TRACESTATE))
    }

    /// The next hop: the same trace with a new span id, or a new sampled trace when there
    /// is no valid parent.
    pub fn next_hop(parent: Option<&Self>) -> Self {
        match parent {
            Some(parent) => Self {
                span_id: new_id(),
                ..parent.clone()
            },
            None => Self {
                trace_id: new_id(),
                span_id: new_id(),
                flags: SAMPLED,
                state: None,
            },
        }
    }

    /// The span an HTTP request is served in: with the `otel` feature, a child of the
    /// request's valid `traceparent`, so the handler's spans join the caller's trace; without
    /// it, no span at all.
    pub fn request_span(headers: &actix_web::http::header::HeaderMap) -> tracing::Span {
        #[cfg(feature = "otel")]
        {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let parent = header(TRACEPARENT).and_then(|tp| Self::parse(tp, header(TRACESTATE)));
            otel::child_span(parent.as_ref())
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = headers;
            tracing::Span::none()
        }
    }

    /// With the `otel` feature, takes the ids of `span` (exported over OTLP), so the next hop
    /// names the exported span as its parent; without it, nothing changes.
    pub fn adopt_span_ids(&mut self, span: &tracing::Span) {
        #[cfg(feature = "otel")]
        otel::adopt(span, self);
        #[cfg(not(feature = "otel"))]
        let _ = span;
    }

    /// The trace id as 32 hex digits, for log fields.
    pub fn trace_id(&self) -> String {
        crate::hexstr::lower(&self.trace_id)
    }

    /// The `traceparent` header value naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            crate::hexstr::lower(&self.trace_id),
            crate::hexstr::lower(&self.span_id),
            self.flags
        )
    }

    /// Writes `traceparent` (and `tracestate`, when there is one) into `headers`.
    pub fn write(&self, headers: &mut FieldTable) {
        headers.insert(
            TRACEPARENT.into(),
            AMQPValue::LongString(LongString::from(self.traceparent())),
        );
        if let Some(state) = &self.state {
            headers.insert(
                TRACESTATE.into(),
                AMQPValue::LongString(LongString::from(state.as_str())),
            );
        }
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn new_id<const N: usize>() -> [u8; N] {
    // An all-zero id is invalid; the first byte raised to 1 keeps the rest random.
    let mut id = [0u8; N];
    rand::fill(&mut id[..]);
    id[0] = id[0].max(1);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_parent_is_continued_with_a_new_span_and_its_state() {
        let parent = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE")).unwrap();
        let next = TraceContext::next_hop(Some(&parent));
        assert_eq!(next.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let header = next.traceparent();
        assert!(
            header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{header}"
        );
        assert!(header.ends_with("-01"));
        assert_ne!(&header[36..52], "00f067aa0ba902b7", "a span of its own");
        let mut headers = FieldTable::default();
        next.write(&mut headers);
        assert_eq!(
            headers.inner().get(TRACESTATE),
            Some(&AMQPValue::LongString("congo=t61rcWkgMzE".into()))
        );
        // Its own header parses back to itself.
        assert_eq!(
            TraceContext::parse(&header, Some("congo=t61rcWkgMzE")),
            Some(next)
        );
    }

    #[test]
    fn anything_invalid_starts_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-\u{e9}bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
        let fresh = TraceContext::next_hop(None);
        assert_ne!(fresh.trace_id(), "0".repeat(32));
        assert!(fresh.traceparent().ends_with("-01"));
        assert_ne!(TraceContext::next_hop(None).trace_id(), fresh.trace_id());
    }

    #[test]
    fn a_hostile_tracestate_is_dropped_and_the_parent_kept() {
        for state in ["a=\nb", &"x".repeat(513), "", "caf\u{e9}=1"] {
            let parsed = TraceContext::parse(VALID, Some(state)).unwrap();
            let mut headers = FieldTable::default();
            parsed.write(&mut headers);
            assert!(headers.inner().get(TRACESTATE).is_none(), "{state:?}");
        }
    }
}
