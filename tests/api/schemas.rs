//! The documents are the contract: every message the relay publishes and every answer it
//! gives is validated against `docs/schemas/*.json` (and each HTTP answer against the schema
//! `docs/openapi.yaml` gives for its path, method and status), so drift between the code and
//! the docs is a test failure. Messages are real ones, read from the broker; their AMQP
//! properties and headers are turned into the JSON the schemas describe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Map, Value};
use weibo_relay::startup::Roles;
use weibo_relay::tooling::sandbox::Faults;

use crate::helpers::*;
use crate::proxy::TcpProxy;
use crate::rig::{close, finish, text, RigOptions, WorkerRig};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn schema_file(name: &str) -> Value {
    let path = docs().join("schemas").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics with every error when `instance` does not match `schema`; `what` names both.
fn assert_matches(what: &str, schema: &Value, instance: &Value) {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("  at '{}': {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}\ninstance: {instance:#}",
        errors.join("\n")
    );
}

/// Validates `instance` against `docs/schemas/<file>`.
fn assert_schema(file: &str, instance: &Value) {
    assert_matches(
        &format!("docs/schemas/{file}"),
        &schema_file(file),
        instance,
    );
}

/// A header value as the schemas see it: text as strings, numbers as numbers.
fn amqp_json(value: &AMQPValue) -> Value {
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

fn table_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
            .collect(),
    )
}

/// The headers as JSON (`{}` when the message has none).
fn headers_json(properties: &BasicProperties) -> Value {
    properties
        .headers()
        .as_ref()
        .map_or_else(|| json!({}), table_json)
}

/// Every basic property but the headers, under its AMQP 0-9-1 name, as pika names them.
fn properties_json(p: &BasicProperties) -> Value {
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
fn assert_message(
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

fn header_str<'a>(headers: &'a Value, name: &str) -> &'a str {
    headers[name]
        .as_str()
        .unwrap_or_else(|| panic!("header {name} in {headers}"))
}

// ---------------------------------------------------------------------------------------
// Order events

#[tokio::test]
async fn form_json_and_other_type_pushes_publish_events_the_schemas_describe() {
    let app = spawn_app().await;

    // A form push continuing the caller's trace.
    let (body, id) = valid_form_push();
    let answer = app
        .http
        .post(app.push_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("traceparent", PARENT)
        .header("tracestate", STATE)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let event = app.next_event().await.delivery;
    assert_eq!(event.routing_key.as_str(), "order.sub_order.201");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["sub_order_id"], id.as_str());
    let headers = headers_json(&event.properties);
    assert_eq!(header_str(&headers, "x-weibo-source"), "push");
    assert_eq!(header_str(&headers, "tracestate"), STATE);

    // A JSON push, numbers as numbers, no trace headers: a new trace and no tracestate.
    let data = order_data(&unique_order_id(), 201);
    let fields = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    let mut object = Map::new();
    for (k, v) in &fields {
        let value = match k.as_str() {
            "appid" | "type" | "timestamp" => json!(v.parse::<i64>().unwrap()),
            _ => json!(v),
        };
        object.insert(k.clone(), value);
    }
    app.post_push("application/json", Value::Object(object).to_string())
        .await
        .assert_success();
    let event = app.next_event().await.delivery;
    assert_message("event", "event.json", &event.properties, &event.data);
    let headers = headers_json(&event.properties);
    assert!(headers.get("tracestate").is_none(), "{headers}");

    // Another business type: kind type_7, no sub order, state none.
    let fields = signed_fields(APPID, SIGN_KEY, "7", r#"{"goods_id":"371965"}"#, now());
    app.post_form(form(&fields)).await.assert_success();
    let event = app.next_event().await.delivery;
    assert_eq!(event.routing_key.as_str(), "order.type_7.none");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["kind"], "type_7");
    assert_eq!(envelope["sub_order_id"], Value::Null);
}

#[tokio::test]
async fn a_reconciled_event_is_what_the_schemas_describe() {
    // A serve whose keeper sweeps every second; no push sender, so the order's only way to
    // the queue is reconciliation.
    let rig = WorkerRig::start_with(RigOptions {
        roles: Roles::Serve,
        adjust: Box::new(|s, _| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 1.try_into().unwrap();
            s.reconcile.lookback_secs = 3600.try_into().unwrap();
        }),
        ..RigOptions::default()
    })
    .await;
    let id = rig.create_orders(1).await.remove(0);
    let queue = tap_queue(&rig.app.settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let event = loop {
        let got = rig
            .app
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if let Some(got) = got {
            break got.delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reconciled in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event.routing_key.as_str(), "order.sub_order.201");
    let envelope = assert_message("event", "event.json", &event.properties, &event.data);
    assert_eq!(envelope["sub_order_id"], id.as_str());
    assert_eq!(envelope["params"], json!({}));
    let headers = headers_json(&event.properties);
    assert_eq!(header_str(&headers, "x-weibo-source"), "reconcile");
}

// ---------------------------------------------------------------------------------------
// Outcomes, delayed and dead commands

/// Takes the next message of `queue` whole, waiting up to 20 s.
async fn take(rig: &WorkerRig, queue: &str) -> lapin::message::Delivery {
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

fn traced() -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), text(PARENT));
    headers.insert("tracestate".into(), text(STATE));
    headers
}

fn assert_outcome(outcome: &lapin::message::Delivery) -> Value {
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

#[tokio::test]
async fn succeeded_and_failed_outcomes_are_what_the_schemas_describe() {
    let rig = WorkerRig::start().await;
    let ids = rig.create_orders(2).await;
    // Succeeded: a traced finish, and an untraced close.
    rig.send_with_headers(finish(&ids[0]).to_string().into_bytes(), traced())
        .await;
    rig.send(close(&ids[1], "out of stock")).await;
    for outcome in rig.outcome_messages(2).await {
        assert_eq!(outcome.routing_key.as_str(), "fulfilment.succeeded");
        let body = assert_outcome(&outcome);
        assert_eq!(body["code"], 0);
        let headers = headers_json(&outcome.properties);
        let was_traced = body["command"]["action"] == "finish";
        assert_eq!(headers.get("tracestate").is_some(), was_traced, "{headers}");
    }

    // Failed: a permanent code (finish on a closed order: 70103), and an unknown appid (no
    // call, code null).
    rig.send_with_headers(finish(&ids[1]).to_string().into_bytes(), traced())
        .await;
    let failed = rig.outcome_messages(1).await.remove(0);
    assert_eq!(failed.routing_key.as_str(), "fulfilment.failed");
    let body = assert_outcome(&failed);
    assert_eq!(body["code"], 70103);
    rig.send(json!({"appid": "777", "sub_order_id": "1", "action": "finish"}))
        .await;
    let failed = rig.outcome_messages(1).await.remove(0);
    assert_eq!(failed.routing_key.as_str(), "fulfilment.failed");
    let body = assert_outcome(&failed);
    assert_eq!(
        (&body["code"], &body["attempts"]),
        (&Value::Null, &json!(0))
    );
}

#[tokio::test]
async fn dead_commands_are_what_the_schemas_describe() {
    let rig = WorkerRig::start().await;
    let dead = weibo_relay::amqp::Names::new(&rig.app.settings.amqp)
        .dead()
        .to_owned();

    // Poison: not JSON, with a producer's own headers and properties. Only a well-formed
    // trace context travels on; the producer's other header does not.
    let mut headers = traced();
    headers.insert("x-producer".into(), text("mine"));
    rig.app
        .channel
        .basic_publish(
            "".into(),
            rig.app.settings.amqp.fulfilment_queue.as_str().into(),
            Default::default(),
            b"\xff not json",
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id("poison-1".into())
                .with_app_id("shop".into())
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let poison = take(&rig, &dead).await;
    assert_message(
        "dead-command",
        "dead-command.json",
        &poison.properties,
        &poison.data,
    );
    let headers = headers_json(&poison.properties);
    assert_eq!(headers["x-attempts"], 0);
    assert!(headers.get("x-last-code").is_none(), "{headers}");
    assert_eq!(header_str(&headers, "traceparent"), PARENT);

    // A permanent platform code: an unknown order (70101), a command that is a command.
    rig.send(finish("999999999")).await;
    let refused = take(&rig, &dead).await;
    let body = assert_message(
        "dead-command",
        "dead-command.json",
        &refused.properties,
        &refused.data,
    );
    assert_schema("command.json", &body);
    let headers = headers_json(&refused.properties);
    assert_eq!(header_str(&headers, "x-last-code"), "70101");
    assert_eq!(headers["x-attempts"], 1);
}

#[tokio::test]
async fn a_command_waiting_in_a_delay_queue_is_what_the_schemas_describe() {
    // A long delay, so the command is still there to be read.
    let rig = WorkerRig::start_with(RigOptions {
        adjust: Box::new(|s, _| {
            s.weibo.retry_base_ms = 30_000.try_into().unwrap();
            s.weibo.retry_max_ms = 30_000.try_into().unwrap();
        }),
        ..RigOptions::default()
    })
    .await;
    let id = rig.create_orders(1).await.remove(0);
    rig.faults(json!({"system_error_next": 1})).await;
    rig.send_with_headers(finish(&id).to_string().into_bytes(), traced())
        .await;
    let queue = format!("{}.retry.30000ms", rig.app.settings.amqp.fulfilment_queue);
    let waiting = take(&rig, &queue).await;
    let body = assert_message(
        "retry-command",
        "dead-command.json",
        &waiting.properties,
        &waiting.data,
    );
    assert_schema("command.json", &body);
    let headers = headers_json(&waiting.properties);
    assert_eq!(headers["x-attempts"], 1);
    assert_eq!(header_str(&headers, "x-last-code"), "10002");
}

// ---------------------------------------------------------------------------------------
// HTTP answers

/// `docs/openapi.yaml` with `./schemas/*.json` references read from their files.
pub(crate) struct OpenApi(Value);

impl OpenApi {
    pub(crate) fn load() -> Self {
        let path = docs().join("openapi.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        Self(serde_yaml_ng::from_str(&text).unwrap())
    }

    /// The JSON schema of the answer to `method path` with `status`, every reference inlined.
    /// Panics when the document does not list that status.
    fn answer_schema(&self, method: &str, path: &str, status: u16) -> Value {
        let response = &self.0["paths"][path][method]["responses"][status.to_string()];
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "docs/openapi.yaml lists no JSON answer {status} for {method} {path}"
        );
        self.inline(schema)
    }

    /// A component schema, every reference inlined.
    fn component(&self, name: &str) -> Value {
        self.inline(&self.0["components"]["schemas"][name])
    }

    fn inline(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
                Some(reference) => self.inline(&self.resolve(reference)),
                None => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v)))
                        .collect(),
                ),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| self.inline(v)).collect()),
            other => other.clone(),
        }
    }

    /// `#/pointer` in this document, or `./schemas/file.json#/pointer` (its own internal
    /// references inlined too).
    fn resolve(&self, reference: &str) -> Value {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let document = match file {
            "" => self.0.clone(),
            file => {
                let name = file
                    .strip_prefix("./schemas/")
                    .expect("a schemas/ reference");
                let schema = schema_file(name);
                // The file's own references (#/$defs/..) are to itself.
                return OpenApi(schema.clone()).inline(
                    schema
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("no {reference}")),
                );
            }
        };
        document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {reference}"))
            .clone()
    }
}

/// Checks one answer against answer.json and against what openapi.yaml lists for
/// `method path` at its status (or, with `component`, that component schema).
pub(crate) fn assert_answer(
    api: &OpenApi,
    method: &str,
    path: &str,
    answer: &Answer,
    component: Option<&str>,
) {
    let body: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} {}: not JSON ({e}): {}",
            answer.status, answer.body
        )
    });
    assert_schema("answer.json", &body);
    let (what, schema) = match component {
        Some(name) => (
            format!(
                "{method} {path} {} (components/schemas/{name})",
                answer.status
            ),
            api.component(name),
        ),
        None => (
            format!("docs/openapi.yaml {method} {path} {}", answer.status),
            api.answer_schema(method, path, answer.status),
        ),
    };
    assert_matches(&what, &schema, &body);
}

async fn raw_answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request completes");
    Answer {
        status: response.status().as_u16(),
        body: response.text().await.unwrap(),
    }
}

/// A client that sends `Content-Length: 100` and seven bytes, then waits for the answer.
async fn slow_client(address: &str, path: &str) -> Answer {
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

#[tokio::test]
async fn every_push_answer_and_every_other_path_is_what_the_documents_describe() {
    let api = OpenApi::load();
    let app = spawn_app().await;
    let push = app.settings.push.path.clone();
    let post = |answer: &Answer, status: u16, code: i64| {
        answer.assert_refused(status, code);
        assert_answer(&api, "post", &push, answer, None);
    };

    let (body, _) = valid_form_push();
    let stored = app.post_form(body).await;
    stored.assert_success();
    assert_answer(&api, "post", &push, &stored, None);

    let data = order_data(&unique_order_id(), 201);
    let mut missing = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    missing.retain(|(k, _)| k != "data");
    post(&app.post_form(form(&missing)).await, 400, 40002);
    let nested = r#"{"appid":"100023","type":2,"data":{"a":1},"timestamp":1,"sign":"x"}"#;
    post(&app.post_push("application/json", nested).await, 400, 40002);

    let mut forged = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    forged[2].1 = order_data("1", 201);
    post(&app.post_form(form(&forged)).await, 401, 40001);
    let stale = signed_fields(APPID, SIGN_KEY, "2", &data, now() - 3600);
    post(&app.post_form(form(&stale)).await, 401, 40003);
    let stranger = signed_fields("1", SIGN_KEY, "2", &data, now());
    post(&app.post_form(form(&stranger)).await, 403, 40301);
    post(&slow_client(&app.address, &push).await, 408, 40800);
    post(&app.post_form("a=".repeat(3000)).await, 413, 41300);
    post(&app.post_push("text/plain", "appid=1").await, 415, 41500);
    post(
        &app.post_push(
            "application/x-www-form-urlencoded; charset=latin1",
            "appid=1",
        )
        .await,
        415,
        41500,
    );

    // Health and readiness on the one listener.
    for path in ["/healthz", "/readyz"] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_answer(&api, "get", path, &answer, None);
    }
    assert_eq!(app.get("/metrics").await.status, 200);

    // Anything else: 404 with the contract's shape.
    let not_found = [
        raw_answer(app.http.get(format!("{}/nowhere", app.address))).await,
        raw_answer(app.http.get(app.push_url())).await,
        raw_answer(app.http.post(format!("{}/healthz", app.address))).await,
        raw_answer(app.http.delete(format!("{}/weibo", app.address))).await,
    ];
    for answer in &not_found {
        answer.assert_refused(404, 40400);
        assert_answer(&api, "any", "other path", answer, Some("Answer40400"));
    }
}

#[tokio::test]
async fn answers_without_a_broker_or_a_token_are_what_the_documents_describe() {
    let api = OpenApi::load();
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    proxy.cut();
    let app = spawn_app_with(test_settings(&proxy.amqp_url()), false).await;
    let (body, _) = valid_form_push();
    let refused = app.post_form(body).await;
    refused.assert_refused(503, 50300);
    assert_answer(&api, "post", &app.settings.push.path, &refused, None);
    let not_ready = app.get("/readyz").await;
    not_ready.assert_refused(503, 50300);
    assert_answer(&api, "get", "/readyz", &not_ready, None);
    assert_eq!(app.get("/healthz").await.status, 200);

    // A worker that never got a token.
    let rig = WorkerRig::start_with(RigOptions {
        faults: Faults {
            token_fail_next: 1_000,
            ..Faults::default()
        },
        wait_ready: false,
        ..RigOptions::default()
    })
    .await;
    let no_token = rig.app.get("/readyz").await;
    no_token.assert_refused(503, 50301);
    assert_answer(&api, "get", "/readyz", &no_token, None);
}

#[tokio::test]
async fn with_an_admin_listener_each_port_answers_the_others_paths_as_documented() {
    let api = OpenApi::load();
    let mut settings = test_settings(AMQP_URL);
    settings.http.admin_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app_with(settings, true).await;
    let admin = app.admin.clone().expect("an admin listener");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = app.get(path).await;
        answer.assert_refused(404, 40400);
        assert_answer(&api, "get", path, &answer, None);
    }
    for path in ["/healthz", "/readyz"] {
        let answer = raw_answer(app.http.get(format!("{admin}{path}"))).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_answer(&api, "get", path, &answer, None);
    }
    let (body, _) = valid_form_push();
    let push = raw_answer(
        app.http
            .post(format!("{admin}{}", app.settings.push.path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    push.assert_refused(404, 40400);
    assert_answer(&api, "post", "admin listener", &push, Some("Answer40400"));
}
