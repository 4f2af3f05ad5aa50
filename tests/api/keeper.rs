//! One token keeper for the whole deployment: several real `worker` processes sharing one
//! broker, one sandbox and one merchant, killed and cut off for real.

use std::time::{Duration, Instant};
use weibo_relay::settings::AmqpUrl;

use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{json, Value};
use std::sync::Arc;
use weibo_relay::settings::Settings;
use weibo_relay::tooling::sandbox::SandboxHandle;

use crate::helpers::*;
use crate::proxy::TcpProxy;
use crate::rig::finish;

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
        let stage = start_stage(
            test_settings(AMQP_URL),
            StageOptions {
                // Every relay of the deployment is a worker process of its own.
                roles: None,
                platform: Some(PlatformOptions {
                    token_ttl,
                    ..PlatformOptions::default()
                }),
                adjust: Box::new(move |settings, _| {
                    settings.weibo.timeout_ms = 2000.try_into().unwrap();
                    settings.weibo.max_attempts = 4.try_into().unwrap();
                    settings.weibo.retry_base_ms = 200.try_into().unwrap();
                    settings.weibo.retry_max_ms = 800.try_into().unwrap();
                    settings.weibo.rate_limit_per_sec =
                        u64::from(rate_limit_per_sec).try_into().unwrap();
                    settings.worker.token_wait_ms = 5000.try_into().unwrap();
                }),
                ready: Ready::No,
                teardown_through: None,
            },
        )
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

#[tokio::test]
async fn three_workers_share_one_token_across_refreshes_and_every_command_succeeds() {
    // A 4 s token is refreshed every 3 s: about five refresh periods while commands flow.
    let mut d = Deployment::start(Duration::from_secs(4), 1000).await;
    for _ in 0..3 {
        let i = d.spawn(None).await;
        d.wait_ready(i).await;
    }
    let started = Instant::now();
    d.the_keeper(Duration::from_secs(5)).await;
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(15) {
        let ids = d.sandbox.create_orders(APPID, 10);
        d.send_finishes(&ids).await;
        sent += ids.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ok, failed) = d.outcomes(sent, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    let issued = d.tokens_issued().await;
    let (refused, calls) = d.token_refusals().await;
    eprintln!(
        "3 workers, {:.1} s: {issued} tokens issued, {refused} of {calls} calls refused for the token, {ok} succeeded, {failed} failed",
        elapsed.as_secs_f64()
    );
    assert_eq!((ok, failed), (sent, 0));
    // One per 3 s refresh period, plus the first.
    let periods = (elapsed.as_secs_f64() / 3.0).ceil() as u64;
    assert!(
        issued <= periods + 1,
        "{issued} tokens in {periods} periods"
    );
    assert!(
        (refused as f64) < 0.03 * calls as f64,
        "{refused} of {calls} calls refused for the token"
    );
    assert_eq!(d.keepers().await.len(), 1);
}

#[tokio::test]
async fn a_killed_keeper_is_replaced_within_15_s_which_adopts_its_token_and_commands_keep_flowing()
{
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    for _ in 0..3 {
        let i = d.spawn(None).await;
        d.wait_ready(i).await;
    }
    let keeper = d.the_keeper(Duration::from_secs(5)).await;
    assert_eq!(d.tokens_issued().await, 1);
    // Every call takes 100 ms, so the keeper dies with calls of its own in flight.
    d.http
        .post(format!("{}/admin/faults", d.sandbox.base_url()))
        .json(&json!({"latency_ms": 100}))
        .send()
        .await
        .unwrap();
    let ids = d.sandbox.create_orders(APPID, 60);
    d.send_finishes(&ids[..30]).await;
    assert_eq!(d.outcomes(5, Duration::from_secs(20)).await, (5, 0));

    d.kill(keeper).await;
    let killed = Instant::now();
    // More commands while the deployment has no keeper.
    d.send_finishes(&ids[30..]).await;
    let next = d.the_keeper(Duration::from_secs(15)).await;
    eprintln!(
        "keeper {keeper} killed; {next} took over after {:?}",
        killed.elapsed()
    );
    assert_ne!(next, keeper);
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        while d.sandbox.order(APPID, id).map(|o| o.state_code)
            != Some(weibo_relay::tooling::sandbox::FINISHED)
        {
            assert!(Instant::now() < deadline, "order {id} never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The rest of the outcomes (a command the dead keeper had called and not acked is
    // called again, answered 70102, and succeeds as well): none failed.
    assert_eq!(d.outcomes(55, Duration::from_secs(20)).await, (55, 0));
    // The new keeper kept the old keeper's token: still valid, and a new one would have
    // cost every process a rejected call.
    assert_eq!(d.tokens_issued().await, 1);
    assert_eq!(d.token_refusals().await.0, 0);
}

#[tokio::test]
async fn a_process_joining_late_serves_at_once_without_asking_for_a_token() {
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    let first = d.spawn(None).await;
    d.wait_ready(first).await;
    assert_eq!(d.tokens_issued().await, 1);
    let late = d.spawn(None).await;
    // Ready means it holds a token: the keeper's, announced when it said hello.
    d.wait_ready(late).await;
    assert_eq!(d.tokens_issued().await, 1);
    assert_eq!(
        d.metric(late, "weibo_relay_token_refreshes_total").await,
        0.0
    );
    assert_eq!(d.metric(late, "weibo_relay_token_keeper_active").await, 0.0);
    // With the first one gone, the late one does every call, with that same token.
    d.kill(first).await;
    let ids = d.sandbox.create_orders(APPID, 10);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(10, Duration::from_secs(30)).await, (10, 0));
    assert_eq!(d.tokens_issued().await, 1);
    assert_eq!(d.token_refusals().await.0, 0);
}

#[tokio::test]
async fn a_keeper_cut_off_from_the_broker_stops_keeping_at_once_and_another_takes_over() {
    // A 6 s token, refreshed every 4.5 s.
    let mut d = Deployment::start(Duration::from_secs(6), 1000).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let cut = d.spawn(Some(&proxy.amqp_url())).await;
    d.wait_ready(cut).await;
    assert_eq!(d.the_keeper(Duration::from_secs(5)).await, cut);
    let other = d.spawn(None).await;
    d.wait_ready(other).await;

    proxy.cut();
    let refreshed_at_cut = d.metric(cut, "weibo_relay_token_refreshes_total").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.metric(cut, "weibo_relay_token_keeper_active").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the cut keeper still keeps; it logged:\n{}",
            d.worker(cut).logged().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.the_keeper(Duration::from_secs(15)).await, other);
    // Two refreshes by the new keeper: the cut one would have refreshed as often by now.
    eventually(
        Duration::from_secs(20),
        "two refreshes by the new keeper",
        || async { d.metric(other, "weibo_relay_token_refreshes_total").await >= 2.0 },
    )
    .await;
    assert_eq!(
        d.metric(cut, "weibo_relay_token_refreshes_total").await,
        refreshed_at_cut,
        "a keeper cut off from the broker asked for tokens"
    );
    let ids = d.sandbox.create_orders(APPID, 5);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(5, Duration::from_secs(20)).await, (5, 0));
}

/// A partition rather than a clean cut: the keeper's connection stays open but nothing
/// passes. The keeper stands down once its pings stop coming back; the broker gives the lead
/// to the other process once it misses the keeper's heartbeats; the partitioned one never
/// asks for a token again. (A refresh that falls due before it stands down, 3 to 4 s after
/// the cut, is the window README describes: the cut comes right after a refresh, so none is.)
#[tokio::test]
async fn a_keeper_behind_a_partition_stands_down_and_another_takes_over_within_15_s() {
    // An 8 s token, refreshed every 6 s.
    let mut d = Deployment::start(Duration::from_secs(8), 1000).await;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let held = d.spawn(Some(&proxy.amqp_url())).await;
    d.wait_ready(held).await;
    assert_eq!(d.the_keeper(Duration::from_secs(5)).await, held);
    let other = d.spawn(None).await;
    d.wait_ready(other).await;
    let refreshed = d.metric(held, "weibo_relay_token_refreshes_total").await;
    eventually(
        Duration::from_secs(10),
        "a refresh by the keeper",
        || async { d.metric(held, "weibo_relay_token_refreshes_total").await > refreshed },
    )
    .await;

    proxy.black_hole();
    let partitioned = Instant::now();
    let refreshed_before = d.metric(held, "weibo_relay_token_refreshes_total").await;
    let deadline = partitioned + Duration::from_secs(6);
    while d.metric(held, "weibo_relay_token_keeper_active").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the partitioned keeper still keeps; it logged:\n{}",
            d.worker(held).logged().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stood_down = partitioned.elapsed();
    let deadline = partitioned + Duration::from_secs(15);
    while d.metric(other, "weibo_relay_token_keeper_active").await != 1.0 {
        assert!(
            Instant::now() < deadline,
            "no keeper 15 s after the partition"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "partition: the keeper stood down after {stood_down:?}; another led after {:?}",
        partitioned.elapsed()
    );
    eventually(
        Duration::from_secs(20),
        "a refresh by the new keeper",
        || async { d.metric(other, "weibo_relay_token_refreshes_total").await >= 1.0 },
    )
    .await;
    assert_eq!(
        d.metric(held, "weibo_relay_token_refreshes_total").await,
        refreshed_before,
        "a keeper behind a partition asked for tokens"
    );
    let ids = d.sandbox.create_orders(APPID, 5);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(5, Duration::from_secs(20)).await, (5, 0));
}

#[tokio::test]
async fn three_workers_together_stay_within_the_platform_rate() {
    const RATE: u32 = 40;
    let mut d = Deployment::start(Duration::from_secs(7200), RATE).await;
    for _ in 0..3 {
        let i = d.spawn(None).await;
        d.wait_ready(i).await;
    }
    d.the_keeper(Duration::from_secs(5)).await;
    let ids = d.sandbox.create_orders(APPID, 600);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(600, Duration::from_secs(60)).await, (600, 0));
    let timeline: Vec<u64> = d
        .http
        .get(format!("{}/admin/timeline", d.sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["order_calls_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(timeline.len(), 600, "{}", d.counters().await);
    // The most calls in any 10 s window, against 10 s of the configured rate.
    let busiest = timeline
        .iter()
        .map(|&start| {
            timeline
                .iter()
                .filter(|&&t| t >= start && t < start + 10_000)
                .count()
        })
        .max()
        .unwrap();
    let span = (timeline[599] - timeline[0]) as f64 / 1000.0;
    eprintln!(
        "3 workers at {RATE}/s together: 600 calls over {span:.1} s, at most {busiest} in 10 s"
    );
    assert!(
        busiest as f64 <= 1.1 * 10.0 * f64::from(RATE),
        "{busiest} in 10 s"
    );
    assert!(span >= 600.0 / (1.1 * f64::from(RATE)), "{span} s");
}

#[tokio::test]
async fn a_token_never_crosses_the_broker_in_clear() {
    use weibo_relay::keeper::wire::{open, MerchantKeys, TokenMessage};
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    // Everything announced on the tokens exchange, as any user of the vhost could read it.
    let tap = format!("{}.tap", d.settings.amqp.fulfilment_queue);
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    // And everything any process of this deployment publishes anywhere, through RabbitMQ's
    // firehose: the events exchange (outcomes), the tokens exchange, and the default exchange
    // (keeper requests, permits, delay and dead queues).
    let firehose = Firehose::on();
    let all = format!("{}.firehose", d.settings.amqp.fulfilment_queue);
    d.channel
        .queue_declare(all.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    for exchange in [
        d.settings.amqp.events_exchange.clone(),
        format!("{}.tokens", d.settings.amqp.fulfilment_queue),
        String::new(),
    ] {
        d.channel
            .queue_bind(
                all.as_str().into(),
                "amq.rabbitmq.trace".into(),
                format!("publish.{exchange}").as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let first = d.spawn(None).await;
    d.wait_ready(first).await;
    d.channel
        .queue_declare(tap.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    d.channel
        .queue_bind(
            tap.as_str().into(),
            format!("{}.tokens", d.settings.amqp.fulfilment_queue)
                .as_str()
                .into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // A second process says hello (the keeper announces its token), then a rejection makes
    // the keeper refresh (and announce again).
    let second = d.spawn(None).await;
    d.wait_ready(second).await;
    d.http
        .post(format!("{}/admin/tokens/revoke", d.sandbox.base_url()))
        .json(&json!({"appid": APPID, "code": 21332}))
        .send()
        .await
        .unwrap();
    let ids = d.sandbox.create_orders(APPID, 4);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(4, Duration::from_secs(20)).await, (4, 0));
    assert_eq!(d.tokens_issued().await, 2);
    // One command that is retried, then dead-lettered: delay and dead queue messages too.
    d.sandbox.create_orders(APPID, 1);
    d.channel
        .basic_publish(
            "".into(),
            d.settings.amqp.fulfilment_queue.as_str().into(),
            BasicPublishOptions::default(),
            finish("no-such-order").to_string().as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    assert_eq!(d.outcomes(1, Duration::from_secs(20)).await, (0, 1));

    let mut generations = Vec::new();
    let channel = d.connection.create_channel().await.unwrap();
    loop {
        let got = channel
            .basic_get(tap.as_str().into(), Default::default())
            .await
            .unwrap();
        let Some(message) = got else { break };
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        assert!(!contains_token(&body), "a token in clear: {body}");
        if message.delivery.routing_key.as_str() == "keeper.leader" {
            // The leader's heartbeat: a stamp, no token.
            continue;
        }
        let sealed: TokenMessage = serde_json::from_str(&body).unwrap();
        let merchant = d.settings.merchants.get(&sealed.appid).unwrap();
        let plain =
            open(&MerchantKeys::derive(merchant), &sealed).expect("sealed with the merchant's key");
        if sealed.appid.as_str() != APPID {
            continue;
        }
        assert!(contains_token(secrecy::ExposeSecret::expose_secret(
            &plain.access_token
        )));
        generations.push(sealed.generation);
    }
    assert!(generations.len() >= 2, "{generations:?}");
    assert!(
        generations.windows(2).any(|w| w[1] > w[0]),
        "{generations:?}"
    );

    // Every message this deployment published, body and headers: no token in clear. The
    // trace stops first: on a shared broker, with permits issued all the while, the copies
    // could otherwise come faster than they are read here.
    drop(firehose);
    let prefix = d
        .settings
        .amqp
        .fulfilment_queue
        .trim_end_matches("fulfilment")
        .to_owned();
    let mut ours = std::collections::BTreeMap::<String, usize>::new();
    loop {
        let got = channel
            .basic_get(all.as_str().into(), Default::default())
            .await
            .unwrap();
        let Some(message) = got else { break };
        let headers = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(table_text)
            .unwrap_or_default();
        let exchange = message
            .delivery
            .routing_key
            .as_str()
            .trim_start_matches("publish.")
            .to_owned();
        // The default exchange carries every test's messages: ours are routed to our names.
        if !exchange.starts_with(&prefix) && !headers.contains(&prefix) {
            continue;
        }
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        assert!(
            !contains_token(&body),
            "a token in clear on {exchange}: {body}"
        );
        assert!(
            !contains_token(&headers),
            "a token in clear in headers on {exchange}: {headers}"
        );
        *ours.entry(exchange).or_default() += 1;
    }
    // Something was seen on each of the three: the check looked where the messages are.
    assert_eq!(ours.len(), 3, "{ours:?}");
}

/// Every key and value of an AMQP table as text (lapin's `Debug` shows strings as bytes).
fn table_text(table: &FieldTable) -> String {
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
struct Firehose;

impl Firehose {
    fn on() -> Self {
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
fn contains_token(text: &str) -> bool {
    text.match_indices("2.00").any(|(i, _)| {
        let rest = &text[i + 4..];
        rest.len() >= 30 && rest.bytes().take(30).all(|b| b.is_ascii_alphanumeric())
    })
}

/// Anyone who can write to the tokens exchange can send an announcement; only one sealed
/// with the merchant's key is believed. Garbage, a bad seal and a seal under another key
/// (with a tempting generation and a forged token) are each counted and ignored: the worker
/// keeps its token, asks for no other, and every command succeeds with it.
#[tokio::test]
async fn announcements_that_do_not_open_are_counted_and_ignored() {
    use weibo_relay::keeper::wire::{seal, MerchantKeys, TokenMessage, TokenPlain};
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    let only = d.spawn(None).await;
    d.wait_ready(only).await;
    assert_eq!(d.tokens_issued().await, 1);
    let rejected = "weibo_relay_token_messages_rejected_total";
    assert_eq!(d.metric(only, rejected).await, 0.0);

    let ours = d.settings.merchants.get(APPID).unwrap();
    let stranger = weibo_relay::tooling::stage::merchant(
        APPID,
        secrecy::ExposeSecret::expose_secret(ours.sign_key()),
        ours.client_id(),
        "somebody-else-0123456789",
        ours.uid(),
    );
    let appid = ours.appid().clone();
    let forged = TokenPlain {
        access_token: format!("2.00{}", "F".repeat(30)).into(),
        issued_at: 0,
        expires_in: 7200,
        obtained_at_ms: 0,
    };
    let wrong_key = seal(&MerchantKeys::derive(&stranger), &appid, 999, &forged);
    let mut altered = seal(
        &MerchantKeys::derive(d.settings.merchants.get(APPID).unwrap()),
        &appid,
        998,
        &forged,
    );
    // Announced under another generation than the one sealed in (the generation is bound).
    altered.generation = 1000;
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        serde_json::to_vec(&TokenMessage {
            sealed: "AAAA".into(),
            ..wrong_key.clone()
        })
        .unwrap(),
        serde_json::to_vec(&wrong_key).unwrap(),
        serde_json::to_vec(&altered).unwrap(),
    ];
    let exchange = format!("{}.tokens", d.settings.amqp.fulfilment_queue);
    for body in &bodies {
        d.channel
            .basic_publish(
                exchange.as_str().into(),
                APPID.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counted = bodies.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric(only, rejected).await < counted {
        assert!(
            Instant::now() < deadline,
            "not every bad announcement counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.metric(only, rejected).await, counted);
    let ids = d.sandbox.create_orders(APPID, 5);
    d.send_finishes(&ids).await;
    assert_eq!(d.outcomes(5, Duration::from_secs(20)).await, (5, 0));
    assert_eq!(d.tokens_issued().await, 1);
    // Every call was made with the genuine token: none refused for its token.
    let calls = &d.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls, &json!({"0": 5}), "{calls}");
}
