//! Logging setup, the masking of personal data before it reaches a log line, and caps on
//! lines about bad input.

mod log_limit;
mod printable;

pub use log_limit::LogLimit;
pub use printable::printable;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Keeps span export running; dropping it (at the end of `main`) flushes what is pending.
/// Without the `otel` feature it holds nothing.
#[must_use = "dropping it stops span export"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    _exporter: Option<crate::trace::otel::Exporter>,
}

/// Installs the global subscriber once: JSON when `WEIBO_RELAY_LOG_FORMAT=json`, text otherwise.
/// A second call (tests) is a no-op.
pub fn init(json: bool) -> Telemetry {
    init_with_default(json, "info,lapin=warn,actix_server=warn")
}

/// lapin's own lines about a failed connection or a closed channel repeat, in parser terms
/// (`ParserErrors { error: Nom(MapOpt) }`), what reaches the relay as an error it logs itself
/// in words, or what it expects (a passive declaration of a queue that is not there closes
/// its channel, and lapin calls that an ERROR): off unless `RUST_LOG` names lapin.
const QUIET_LAPIN: [&str; 3] = [
    "lapin::io_loop=off",
    "lapin::channels=off",
    "lapin::channel=off",
];

/// Like [`init`], with `default_filter` used when `RUST_LOG` is unset.
pub fn init_with_default(json: bool, default_filter: &str) -> Telemetry {
    let asked = std::env::var("RUST_LOG").ok();
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter))
        // lapin logs a returned message whole, personal data included: never let it through.
        .add_directive(
            "lapin::returned_messages=off"
                .parse()
                .expect("static directive"),
        );
    if !asked.is_some_and(|f| f.contains("lapin")) {
        for directive in QUIET_LAPIN {
            filter = filter.add_directive(directive.parse().expect("static directive"));
        }
    }
    // Colours only for a person at a terminal: in a file or a log pipeline they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let lines = if json {
        fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .boxed()
    } else {
        fmt::layer().with_target(true).with_ansi(ansi).boxed()
    };
    let subscriber = tracing_subscriber::registry().with(lines.with_filter(filter));
    #[cfg(feature = "otel")]
    {
        let (layer, exporter) = match crate::trace::otel::layer() {
            Some((layer, exporter)) => (Some(layer), Some(exporter)),
            None => (None, None),
        };
        let _ = subscriber.with(layer).try_init();
        Telemetry {
            _exporter: exporter,
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = subscriber.try_init();
        Telemetry {}
    }
}

/// True when the environment asks for JSON logs.
pub fn json_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("json"))
}

/// Longest piece of request-supplied text an answer or a log line repeats.
const SHOWN_CHARS: usize = 64;

/// Text taken from a request (a field name, a content type), fit to repeat in an answer or a
/// log line: escaped as a Rust string literal, so a newline or an escape sequence cannot forge
/// a log line or reach a terminal, and cut to 64 characters, so a huge name cannot flood them.
pub fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// A message that may quote request- or message-supplied text (a parser's error, say), fit
/// for an answer, a log line or a header: cut to `max` characters, control characters
/// escaped.
pub fn clip(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// `error` and every cause under it, joined by `: ` (reqwest's own message alone says only
/// "error sending request"); a cause a layer already repeats in its own message is left out.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Masks personal data (phone numbers, recharge accounts): keeps at most the first three and
/// last two characters, so an operator can still tell two values apart.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n <= 4 => "*".repeat(n),
        n if n <= 7 => format!("{}{}", chars[0], "*".repeat(n - 1)),
        n => {
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[n - 2..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(n - 5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{error_chain, mask, shown};

    #[test]
    fn an_error_chain_names_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            error_chain(&Outer(refused)),
            "error sending request: refused"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("connect: {0}")]
        struct Repeats(#[source] std::io::Error);
        let repeated = Repeats(std::io::Error::other("timed out"));
        assert_eq!(error_chain(&repeated), "connect: timed out");
    }

    #[test]
    fn request_text_is_escaped_and_cut() {
        assert_eq!(shown("appid"), "\"appid\"");
        assert_eq!(shown("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
        let long = "k".repeat(60_000);
        let s = shown(&long);
        assert_eq!(s.chars().count(), 64 + 3, "{s}");
        assert!(s.ends_with("…\""));
    }

    #[test]
    fn phone_numbers_are_masked() {
        assert_eq!(mask("13812345678"), "138******78");
        assert_eq!(mask("1234567890"), "123*****90");
        assert_eq!(mask("abc"), "***");
        assert_eq!(mask("abcdef"), "a*****");
        assert_eq!(mask("库存不足库存不足"), "库存不***不足");
        assert_eq!(mask(""), "");
    }
}
