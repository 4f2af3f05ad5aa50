//! What the secrecy tests look through: the firehose, and text shaped like a token.

use lapin::types::FieldTable;

/// Every key and value of an AMQP table as text (lapin's `Debug` shows strings as bytes).
pub(crate) fn table_text(table: &FieldTable) -> String {
    fn value_text(value: &lapin::types::AMQPValue) -> String {
        use lapin::types::AMQPValue;
        match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            AMQPValue::FieldArray(a) => a
                .as_slice()
                .iter()
                .map(value_text)
                .collect::<Vec<_>>()
                .join(","),
            AMQPValue::FieldTable(t) => table_text(t),
            AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
            other => format!("{other:?}"),
        }
    }
    table
        .inner()
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// RabbitMQ's firehose on the default vhost for as long as it lives: every publish is copied
/// to `amq.rabbitmq.trace` (routing key `publish.<exchange>`).
pub(crate) struct Firehose;

impl Firehose {
    pub(crate) fn on() -> Self {
        let on = std::process::Command::new("rabbitmqctl")
            .args(["trace_on", "-p", "/"])
            .output()
            .expect("rabbitmqctl runs");
        assert!(on.status.success(), "rabbitmqctl trace_on failed");
        Self
    }
}

impl Drop for Firehose {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["trace_off", "-p", "/"])
            .output();
    }
}

/// True when `text` holds something shaped like a sandbox access token (`2.00` + 30 alnum).
pub(crate) fn contains_token(text: &str) -> bool {
    text.match_indices("2.00").any(|(i, _)| {
        let rest = &text[i + 4..];
        rest.len() >= 30 && rest.bytes().take(30).all(|b| b.is_ascii_alphanumeric())
    })
}
