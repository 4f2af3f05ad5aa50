//! Several real `worker` processes on one stage, one sandbox and one merchant: a deployment a
//! test can kill, cut off and read the outcomes of.

use crate::support::rig::finish;
use crate::support::*;
use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weibo_relay::settings::AmqpUrl;
use weibo_relay::settings::Settings;
use weibo_relay_tooling::sandbox::SandboxHandle;

/// A sandbox and the configuration every worker process of one deployment shares.
pub(crate) struct Deployment {
    pub(crate) stage: Stage,
    pub(crate) sandbox: Arc<SandboxHandle>,
    pub(crate) settings: Settings,
    pub(crate) workers: Vec<Option<RelayProcess>>,
    pub(crate) connection: Connection,
    pub(crate) channel: Channel,
    pub(crate) outcomes: String,
    pub(crate) http: reqwest::Client,
}

impl Deployment {
    pub(crate) async fn start(token_ttl: Duration, rate_limit_per_sec: u32) -> Self {
        // Every relay of the deployment is a worker process of its own.
        let stage = Harness::builder()
            .token_ttl(token_ttl)
            .settings(move |settings| {
                settings.weibo.timeout_ms = 2000.try_into().unwrap();
                settings.weibo.max_attempts = 4.try_into().unwrap();
                settings.weibo.retry_base_ms = 200.try_into().unwrap();
                settings.weibo.retry_max_ms = 800.try_into().unwrap();
                settings.weibo.rate_limit_per_sec =
                    u64::from(rate_limit_per_sec).try_into().unwrap();
                settings.worker.token_wait_ms = 5000.try_into().unwrap();
            })
            .stage()
            .await;
        let connection = Connection::connect(AMQP_URL, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let settings = stage.settings().clone();
        let outcomes = format!("{}.outcomes", settings.amqp.events_queue);
        // Exclusive, not auto-delete: it lives as long as the test's connection, across the
        // consumers that come and go on it.
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        channel
            .queue_declare(outcomes.as_str().into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        Self {
            sandbox: stage.sandbox().clone(),
            stage,
            settings,
            workers: Vec::new(),
            connection,
            channel,
            outcomes,
            http: reqwest::Client::new(),
        }
    }

    /// Starts a worker process (through `amqp_url` when given); returns its index.
    pub(crate) async fn spawn(&mut self, amqp_url: Option<&str>) -> usize {
        let worker = self.stage.spawn_with(BIN, "worker", "info", |settings| {
            if let Some(url) = amqp_url {
                settings.amqp.url = AmqpUrl::parse(url).unwrap();
            }
        });
        self.workers.push(Some(worker));
        let i = self.workers.len() - 1;
        if i == 0 {
            // Bind the outcome queue once the first worker declared the exchange.
            self.wait_ready(i).await;
            self.channel
                .queue_bind(
                    self.outcomes.as_str().into(),
                    self.settings.amqp.events_exchange.as_str().into(),
                    "fulfilment.#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        i
    }

    pub(crate) async fn wait_ready(&self, i: usize) {
        self.worker(i).wait_ready().await;
    }

    pub(crate) fn worker(&self, i: usize) -> &RelayProcess {
        self.workers[i].as_ref().expect("a running worker")
    }

    /// One sample of a worker's metric, 0 when absent.
    pub(crate) async fn metric(&self, i: usize, name: &str) -> f64 {
        let body = self
            .http
            .get(format!("http://{}/metrics", self.worker(i).address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The indexes of running workers that say they keep the token.
    pub(crate) async fn keepers(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            if w.is_some() && self.metric(i, "weibo_relay_token_keeper_active").await == 1.0 {
                out.push(i);
            }
        }
        out
    }

    pub(crate) async fn the_keeper(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let keepers = self.keepers().await;
            assert!(keepers.len() <= 1, "two keepers at once: {keepers:?}");
            if let Some(&k) = keepers.first() {
                return k;
            }
            assert!(Instant::now() < deadline, "no keeper within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn kill(&mut self, i: usize) {
        let worker = self.workers[i].take().unwrap();
        let (status, _) = worker.signal("KILL").await;
        assert!(!status.success());
    }

    pub(crate) async fn counters(&self) -> Value {
        self.http
            .get(format!("{}/admin/counters", self.sandbox.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) async fn tokens_issued(&self) -> u64 {
        self.counters().await["tokens_issued"][APPID]
            .as_u64()
            .unwrap_or(0)
    }

    pub(crate) async fn send_finishes(&self, ids: &[String]) {
        for id in ids {
            self.channel
                .basic_publish(
                    "".into(),
                    self.settings.amqp.fulfilment_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    finish(id).to_string().as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap();
        }
    }

    /// Takes exactly `n` outcomes, waiting up to `within`; returns (succeeded, failed). One
    /// message at a time (`basic_get`): a consumer would be handed more than `n`, and those
    /// beyond would be lost with its channel.
    pub(crate) async fn outcomes(&self, n: usize, within: Duration) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        let deadline = Instant::now() + within;
        while ok + failed < n {
            let got = self
                .channel
                .basic_get(
                    self.outcomes.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match got {
                Some(message) => match message.delivery.routing_key.as_str() {
                    "fulfilment.succeeded" => ok += 1,
                    _ => failed += 1,
                },
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "{ok} succeeded, {failed} failed of {n} within {within:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (ok, failed)
    }

    /// Platform finish calls refused for a superseded or expired token, and all of them.
    pub(crate) async fn token_refusals(&self) -> (u64, u64) {
        let calls = &self.counters().await["calls"]["retailerFinishSub"];
        let count = |code: &str| calls[code].as_u64().unwrap_or(0);
        let all = calls
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        (count("21332") + count("21327"), all)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            worker.kill_now();
        }
    }
}
