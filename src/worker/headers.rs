//! The headers a command carries between attempts.

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

/// Attempts made so far on the platform.
pub const ATTEMPTS: &str = "x-attempts";
/// Why the command was dead-lettered.
pub const DEATH_REASON: &str = "x-death-reason";
/// The platform code (or `none`) of the last attempt.
pub const LAST_CODE: &str = "x-last-code";

/// Headers RabbitMQ or earlier passes added that must not travel on.
const STALE: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// The `x-attempts` header, 0 when absent or not a number.
pub fn attempts(properties: &BasicProperties) -> u32 {
    let Some(value) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS))
    else {
        return 0;
    };
    let n: i128 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => (*v).into(),
        AMQPValue::LongString(s) => s.to_string().parse().unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The delivery's own headers, minus what must not travel on, with `changes` applied
/// (`None` removes a header).
pub fn carried(properties: &BasicProperties, changes: &[(&str, Option<AMQPValue>)]) -> FieldTable {
    let mut table = FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (k, v) in headers.inner() {
            let key = k.as_str();
            if !STALE.contains(&key) && !changes.iter().any(|(c, _)| *c == key) {
                table.insert(k.clone(), v.clone());
            }
        }
    }
    for (key, value) in changes {
        if let Some(value) = value {
            table.insert((*key).into(), value.clone());
        }
    }
    table
}

/// A number header.
pub fn number(n: u32) -> AMQPValue {
    AMQPValue::LongLongInt(n.into())
}

/// A text header.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The code as header text: the number, or `none`.
pub fn code_text(code: Option<i64>) -> AMQPValue {
    text(&code.map_or_else(|| "none".to_owned(), |c| c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_read_any_integer_and_default_to_zero() {
        let with = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert(ATTEMPTS.into(), v);
            BasicProperties::default().with_headers(t)
        };
        assert_eq!(attempts(&BasicProperties::default()), 0);
        assert_eq!(attempts(&with(AMQPValue::LongLongInt(3))), 3);
        assert_eq!(attempts(&with(AMQPValue::ShortShortUInt(2))), 2);
        assert_eq!(attempts(&with(text("5"))), 5);
        assert_eq!(attempts(&with(AMQPValue::LongLongInt(-4))), 0);
        assert_eq!(attempts(&with(text("x"))), 0);
    }

    #[test]
    fn carried_headers_drop_rabbitmq_history_and_apply_changes() {
        let mut t = FieldTable::default();
        t.insert("x-death".into(), text("history"));
        t.insert("trace-id".into(), text("abc"));
        t.insert(ATTEMPTS.into(), number(1));
        let props = BasicProperties::default().with_headers(t);
        let out = carried(&props, &[(ATTEMPTS, Some(number(2))), (LAST_CODE, None)]);
        let inner = out.inner();
        assert_eq!(inner.get("trace-id"), Some(&text("abc")));
        assert_eq!(inner.get(ATTEMPTS), Some(&number(2)));
        assert!(!inner.contains_key("x-death"));
        assert!(!inner.contains_key(LAST_CODE));
    }
}
