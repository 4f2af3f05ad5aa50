//! `weibo-relay events tail`: new events of the log, one line each, for an operator's eyes.
//!
//! Only entries the relay sealed are shown; the rest are counted and the count said. Even a
//! sealed entry holds text the relay did not write (a sub order id from a push, say), so
//! every field but the time is escaped: no control character, escape sequence or line
//! break reaches the terminal.

use std::io::Write;

use serde_json::Value;

use super::log::{Accept, LogEntry, LogError, LogReader, Offset};
use super::replay::{connect, header, keys, ReplayError};
use super::SOURCE_HEADER;
use crate::amqp::Names;
use crate::ids::AppId;
use crate::settings::Settings;
use crate::telemetry::shown;

/// What a tail showed and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailReport {
    /// Events printed.
    pub shown: u64,
    /// Entries skipped: not sealed by this deployment.
    pub skipped: u64,
}

/// Prints each event published from now on to `out`, one line each, until `stop` or a
/// closed output; says on `notices` when it first skips an entry it cannot trust.
pub async fn tail(
    settings: &Settings,
    appid: Option<&AppId>,
    out: &mut impl Write,
    notices: &mut impl Write,
    stop: tokio_util::sync::CancellationToken,
) -> Result<TailReport, ReplayError> {
    let accept = Accept {
        keys: keys(settings)?,
        max_entry_bytes: None,
    };
    let broker = connect(settings).await?;
    let log = Names::new(&settings.amqp).event_log().to_owned();
    let link = broker
        .current()
        .ok_or_else(|| super::replay::not_connected(settings))?;
    let log_error = |source: LogError| ReplayError::Log {
        log: log.clone(),
        source,
    };
    let mut reader = LogReader::open(link.connection(), &log, Offset::Next, accept)
        .await
        .map_err(|e| log_error(e.into()))?;
    let mut report = TailReport::default();
    let result = loop {
        let entry = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            entry = reader.next() => entry,
        };
        let skipped = reader.skipped().total();
        if report.skipped == 0 && skipped > 0 {
            let _ = writeln!(
                notices,
                "tail: skipping entries of the log this deployment did not seal (counted; the total is said at the end)"
            );
        }
        report.skipped = skipped;
        let entry = match entry {
            Ok(Some(entry)) => entry,
            Ok(None) => break Ok(()),
            Err(source) => break Err(log_error(source)),
        };
        if appid.is_some_and(|a| *a != entry.appid) {
            continue;
        }
        if writeln!(out, "{}", line(&entry)).is_err() {
            break Ok(());
        }
        report.shown = report.shown.saturating_add(1);
    };
    reader.close().await;
    broker.shutdown().await;
    result.map(|()| report)
}

/// One event for an operator's eyes: no personal data, only what identifies it.
fn line(entry: &LogEntry) -> String {
    let envelope: Value = serde_json::from_slice(&entry.delivery.data).unwrap_or_default();
    let at = crate::clock::rfc3339(entry.received_at).unwrap_or_else(|| "-".to_owned());
    let field = |v: &Value| match v {
        Value::String(s) => shown(s),
        Value::Null => "null".to_owned(),
        other => word(&other.to_string()),
    };
    let source = header(entry, SOURCE_HEADER).map(String::from_utf8_lossy);
    format!(
        "{at} {} appid={} sub_order_id={} state_code={} source={} event_id={}",
        word(entry.delivery.routing_key.as_str()),
        field(&envelope["appid"]),
        field(&envelope["sub_order_id"]),
        field(&envelope["state_code"]),
        source.as_deref().map_or_else(|| "-".to_owned(), word),
        field(&envelope["event_id"]),
    )
}

/// `text` as it is when it holds only what the relay itself writes in such places (letters,
/// digits, `.`, `_`, `-`), else quoted, escaped and cut like any text from outside: a space
/// cannot start a fake field, a newline a fake line, an escape sequence a colour.
fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        text.to_owned()
    } else {
        shown(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::message::Delivery;
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::BasicProperties;

    fn entry(routing_key: &str, source: &str, body: &str) -> LogEntry {
        let mut headers = FieldTable::default();
        headers.insert(SOURCE_HEADER.into(), AMQPValue::LongString(source.into()));
        let mut delivery = Delivery::mock(1, "x".into(), routing_key.into(), false, body.into());
        delivery.properties = BasicProperties::default().with_headers(headers);
        LogEntry {
            delivery,
            appid: AppId::parse("100023").unwrap(),
            received_at: crate::clock::from_unix_secs(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn a_line_shows_the_relays_own_words_plainly_and_escapes_everything_else() {
        let genuine = entry(
            "order.sub_order.201",
            "push",
            r#"{"appid":"100023","sub_order_id":"42","state_code":201,"event_id":"ab"}"#,
        );
        assert_eq!(
            line(&genuine),
            "2023-11-14T22:13:20Z order.sub_order.201 appid=\"100023\" sub_order_id=\"42\" state_code=201 source=push event_id=\"ab\""
        );
        let hostile = entry(
            "order.\u{1b}[31mred\nfake line",
            "push\u{0}\r\n2023-11-14T22:13:20Z order.sub_order.301",
            r#"{"appid":"1\u0000","sub_order_id":"\u001b]0;title\u0007","state_code":{"a":"\u009b2J"},"event_id":"x\ny"}"#,
        );
        let shown = line(&hostile);
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(
            !shown.chars().any(|c| c.is_control()),
            "a control character reached the line: {shown:?}"
        );
        assert!(
            shown.contains(r#" "order.\u{1b}[31mred\nfake line" "#),
            "{shown}"
        );
        assert!(shown.contains(r#"source="push\0\r\n2023"#), "{shown}");
        assert!(
            shown.contains(r#"sub_order_id="\u{1b}]0;title\u{7}""#),
            "{shown}"
        );
    }
}
