//! A worker process, the sandbox it talks to, and a queue catching its outcomes.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};
use std::sync::Arc;
use weibo_relay::settings::Settings;
use weibo_relay::startup::Roles;
use weibo_relay::tooling::sandbox::{Faults, SandboxHandle};

use crate::helpers::*;

/// A relay (a worker unless told otherwise) on a stage with the sandbox platform, and a
/// queue catching its outcomes.
pub struct WorkerRig {
    pub app: TestApp,
    pub sandbox: Arc<SandboxHandle>,
    pub admin: reqwest::Client,
    outcomes: String,
}

/// A last change to a rig's settings, knowing its sandbox.
pub type Adjust = Box<dyn FnOnce(&mut Settings, &SandboxHandle) + Send>;

pub struct RigOptions {
    pub amqp_url: String,
    pub max_attempts: u32,
    pub token_ttl: Duration,
    pub timeout_ms: u64,
    /// Faults the sandbox has from the start.
    pub faults: Faults,
    /// Wait for /readyz (a token held) before returning.
    pub wait_ready: bool,
    /// The roles of the relay under test.
    pub roles: Roles,
    /// Applied to the settings last (e.g. to point the client somewhere else).
    pub adjust: Adjust,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            amqp_url: AMQP_URL.to_owned(),
            max_attempts: 4,
            token_ttl: Duration::from_secs(7200),
            timeout_ms: 2000,
            faults: Faults::default(),
            wait_ready: true,
            roles: Roles::Worker,
            adjust: Box::new(|_, _| {}),
        }
    }
}

impl WorkerRig {
    pub async fn start() -> Self {
        Self::start_with(RigOptions::default()).await
    }

    pub async fn start_with(options: RigOptions) -> Self {
        let (max_attempts, timeout_ms, adjust) =
            (options.max_attempts, options.timeout_ms, options.adjust);
        let stage = start_stage(
            test_settings(&options.amqp_url),
            StageOptions {
                roles: Some(options.roles),
                platform: Some(PlatformOptions {
                    faults: options.faults,
                    token_ttl: options.token_ttl,
                }),
                adjust: Box::new(move |settings, sandbox| {
                    settings.weibo.timeout_ms = timeout_ms.try_into().unwrap();
                    settings.weibo.max_attempts = u64::from(max_attempts).try_into().unwrap();
                    settings.weibo.retry_base_ms = 100.try_into().unwrap();
                    settings.weibo.retry_max_ms = 400.try_into().unwrap();
                    settings.weibo.rate_limit_per_sec = 1000.try_into().unwrap();
                    settings.worker.token_wait_ms = 2000.try_into().unwrap();
                    adjust(settings, sandbox.expect("a rig has a platform"));
                }),
                ready: Ready::Broker,
                teardown_through: None,
            },
        )
        .await;
        let sandbox = stage.sandbox().clone();
        let app = TestApp::on(stage).await;
        let outcomes = format!("{}.outcomes", app.settings.amqp.events_queue);
        app.channel
            .queue_declare(
                outcomes.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        app.channel
            .queue_bind(
                outcomes.as_str().into(),
                app.settings.amqp.events_exchange.as_str().into(),
                "fulfilment.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let rig = Self {
            app,
            sandbox,
            admin: reqwest::Client::new(),
            outcomes,
        };
        if options.wait_ready {
            eventually(
                Duration::from_secs(10),
                "worker ready (token held)",
                || async { rig.app.get("/readyz").await.status == 200 },
            )
            .await;
        }
        rig
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .admin
            .request(method, format!("{}{path}", self.sandbox.base_url()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "admin {path}: {}", res.status());
        res.json().await.unwrap()
    }

    pub async fn create_orders(&self, count: usize) -> Vec<String> {
        let v = self
            .admin(
                reqwest::Method::POST,
                "/admin/orders",
                Some(json!({"appid": APPID, "count": count})),
            )
            .await;
        v["sub_order_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn order_state(&self, id: &str) -> i64 {
        let v = self
            .admin(
                reqwest::Method::GET,
                &format!("/admin/orders/{APPID}/{id}"),
                None,
            )
            .await;
        v["state_code"].as_i64().unwrap()
    }

    pub async fn faults(&self, faults: Value) {
        self.admin(reqwest::Method::POST, "/admin/faults", Some(faults))
            .await;
    }

    pub async fn counters(&self) -> Value {
        self.admin(reqwest::Method::GET, "/admin/counters", None)
            .await
    }

    pub async fn send(&self, command: Value) {
        self.send_raw(command.to_string().into_bytes()).await;
    }

    pub async fn send_raw(&self, body: Vec<u8>) {
        self.send_with_headers(body, FieldTable::default()).await;
    }

    /// Publishes a command body with headers of the producer's choosing, confirmed.
    pub async fn send_with_headers(&self, body: Vec<u8>, headers: FieldTable) {
        self.app
            .channel
            .basic_publish(
                "".into(),
                self.app.settings.amqp.fulfilment_queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap();
    }

    /// Waits for `n` outcomes and returns them as (routing key, body).
    pub async fn outcomes(&self, n: usize) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while out.len() < n {
            let got = self
                .app
                .channel
                .basic_get(
                    self.outcomes.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match got {
                Some(m) => out.push((
                    m.delivery.routing_key.to_string(),
                    serde_json::from_slice(&m.delivery.data).unwrap(),
                )),
                None => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "only {} of {n} outcomes: {out:?}",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        out
    }

    /// Takes the next `n` outcome messages whole (properties included), waiting up to 20 s.
    pub async fn outcome_messages(&self, n: usize) -> Vec<lapin::message::Delivery> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while out.len() < n {
            let got = self
                .app
                .channel
                .basic_get(
                    self.outcomes.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match got {
                Some(m) => out.push(m.delivery),
                None => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "only {} of {n} outcomes",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        out
    }

    /// Takes the next dead command: (body, headers).
    pub async fn next_dead(&self) -> (Value, FieldTable) {
        let dead = weibo_relay::amqp::Names::new(&self.app.settings.amqp)
            .dead()
            .to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self
                .app
                .channel
                .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if let Some(m) = got {
                let body = serde_json::from_slice(&m.delivery.data).unwrap_or(Value::Null);
                return (
                    body,
                    m.delivery.properties.headers().clone().unwrap_or_default(),
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn dead_depth(&self) -> u32 {
        let dead = weibo_relay::amqp::Names::new(&self.app.settings.amqp)
            .dead()
            .to_owned();
        self.app.depth_of(&dead).await
    }

    pub async fn metric(&self, line_start: &str) -> String {
        let body = self.app.get("/metrics").await.body;
        body.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or("")
            .to_owned()
    }
}

pub fn header<'a>(h: &'a FieldTable, key: &str) -> &'a AMQPValue {
    h.inner()
        .get(key)
        .unwrap_or_else(|| panic!("header {key} missing in {h:?}"))
}

pub fn header_text(h: &FieldTable, key: &str) -> String {
    match header(h, key) {
        AMQPValue::LongString(s) => s.to_string(),
        other => panic!("{key} is not text: {other:?}"),
    }
}

pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

pub fn finish(id: &str) -> Value {
    json!({"appid": APPID, "sub_order_id": id, "action": "finish"})
}

pub fn close(id: &str, reason: &str) -> Value {
    json!({"appid": APPID, "sub_order_id": id, "action": "close", "reason": reason})
}
