//! A relay (a worker unless told otherwise), the sandbox it talks to, and a queue catching its
//! outcomes: what [`Harness::rig`](super::Harness::rig) starts.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};
use std::sync::Arc;
use weibo_relay_tooling::sandbox::SandboxHandle;

use crate::support::*;

/// A relay (a worker unless told otherwise) on a stage with the sandbox platform, and a
/// queue catching its outcomes.
pub struct WorkerRig {
    pub app: TestApp,
    pub sandbox: Arc<SandboxHandle>,
    pub admin: reqwest::Client,
    outcomes: String,
}

impl WorkerRig {
    /// The rig on `stage` (a relay in this process, a platform); with `wait`, once the relay
    /// is ready (a token held).
    pub(super) async fn on(stage: Stage, wait: bool) -> Self {
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
        if wait {
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
