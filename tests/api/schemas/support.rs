//! Real messages and answers turned into the JSON the schemas describe.

use crate::support::contract::*;
use crate::support::rig::{text, WorkerRig};
use crate::support::*;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub(crate) const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub(crate) const STATE: &str = "congo=t61rcWkgMzE";

/// A header value as the schemas see it: text as strings, numbers as numbers.
pub(crate) fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(d.scale.into())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        // A byte string that is not UTF-8 would not be a JSON string: show it as bytes, so a
        // schema asking for a string fails.
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(s) => json!(s),
            Err(_) => json!(s.as_bytes()),
        },
        AMQPValue::ByteArray(b) => json!(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::Void => Value::Null,
    }
}

pub(crate) fn table_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
            .collect(),
    )
}

/// The headers as JSON (`{}` when the message has none).
pub(crate) fn headers_json(properties: &BasicProperties) -> Value {
    properties
        .headers()
        .as_ref()
        .map_or_else(|| json!({}), table_json)
}

/// Every basic property but the headers, under its AMQP 0-9-1 name, as pika names them.
pub(crate) fn properties_json(p: &BasicProperties) -> Value {
    let mut out = Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(name.to_owned(), value);
        }
    };
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| json!(s.as_str()));
    put("content_type", text(p.content_type()));
    put("content_encoding", text(p.content_encoding()));
    put("delivery_mode", p.delivery_mode().map(|v| json!(v)));
    put("priority", p.priority().map(|v| json!(v)));
    put("correlation_id", text(p.correlation_id()));
    put("reply_to", text(p.reply_to()));
    put("expiration", text(p.expiration()));
    put("message_id", text(p.message_id()));
    put("timestamp", p.timestamp().map(|v| json!(v)));
    put("type", text(p.kind()));
    put("user_id", text(p.user_id()));
    put("app_id", text(p.app_id()));
    put("cluster_id", text(p.cluster_id()));
    Value::Object(out)
}

/// Validates one message whole: body, properties and headers, each against its schema file.
pub(crate) fn assert_message(
    kind: &str,
    payload_schema: &str,
    properties: &BasicProperties,
    body: &[u8],
) -> Value {
    let payload: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        // A dead command's body need not be JSON; dead-command.json then says what it is.
        json!(String::from_utf8_lossy(body))
    });
    assert_schema(payload_schema, &payload);
    assert_schema(
        &format!("properties-{kind}.json"),
        &properties_json(properties),
    );
    assert_schema(&format!("headers-{kind}.json"), &headers_json(properties));
    payload
}

pub(crate) fn header_str<'a>(headers: &'a Value, name: &str) -> &'a str {
    headers[name]
        .as_str()
        .unwrap_or_else(|| panic!("header {name} in {headers}"))
}

/// Takes the next message of `queue` whole, waiting up to 20 s.
pub(crate) async fn take(rig: &WorkerRig, queue: &str) -> lapin::message::Delivery {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = rig
            .app
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if let Some(got) = got {
            return got.delivery;
        }
        assert!(std::time::Instant::now() < deadline, "nothing in {queue}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn traced() -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), text(PARENT));
    headers.insert("tracestate".into(), text(STATE));
    headers
}

pub(crate) fn assert_outcome(outcome: &lapin::message::Delivery) -> Value {
    let body = assert_message(
        "outcome",
        "outcome.json",
        &outcome.properties,
        &outcome.data,
    );
    assert_eq!(
        outcome.properties.kind().as_ref().map(|k| k.as_str()),
        Some(outcome.routing_key.as_str()),
        "type is the routing key"
    );
    body
}

pub(crate) async fn raw_answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request completes");
    Answer {
        status: response.status().as_u16(),
        body: response.text().await.unwrap(),
    }
}

/// A client that sends `Content-Length: 100` and seven bytes, then waits for the answer.
pub(crate) async fn slow_client(address: &str, path: &str) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nConnection: close\r\n\r\nappid=1"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("the server gives up on a slow client")
        .unwrap();
    let status = raw[9..12].parse().unwrap();
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    Answer {
        status,
        body: body.to_owned(),
    }
}
