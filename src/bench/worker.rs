//! `bench worker`: N finish commands through a worker process against the sandbox with a set
//! latency; reports calls per second against `weibo.rate_limit_per_sec`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{run_id, BenchError, Load, RateCheck, Report, Samples};
use crate::amqp::Topology;
use crate::config::{Merchant, Merchants, Settings};
use crate::sandbox::{Faults, Sandbox, SandboxConfig, SandboxHandle, FINISHED};
use crate::startup::{Application, Roles};
use crate::worker::{worker_topology, RetryPolicy};

const APPID: &str = "100023";
/// Broker link and first token: beyond this the setup, not the worker, is what failed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How `bench worker` runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Commands in all (`events`), the run's time bound; `concurrency` is the worker's.
    pub load: Load,
    /// Latency the sandbox adds to every platform call.
    pub latency_ms: u64,
    /// The worker's `weibo.rate_limit_per_sec`.
    pub rate_limit_per_sec: u32,
}

/// Runs a sandbox and a worker with names of their own, sends the commands, waits until
/// every order is final (or the time bound), reports, and removes its queues.
pub async fn run(base: Settings, options: WorkerOptions) -> Result<Report, BenchError> {
    options.load.validate()?;
    if options.rate_limit_per_sec == 0 {
        return Err(BenchError::Invalid(
            "--rate-limit must be at least 1".into(),
        ));
    }
    let mut settings = bench_settings(base, &options);
    let mut sandbox_config = SandboxConfig::new(settings.merchants.clone());
    sandbox_config.faults = Faults {
        latency_ms: options.latency_ms,
        ..Faults::default()
    };
    let sandbox =
        Arc::new(Sandbox::start(sandbox_config).map_err(|e| BenchError::Setup(e.to_string()))?);
    settings.weibo.api_base = sandbox.api_base();
    settings.weibo.oauth_base = sandbox.base_url();
    let topology = Topology::events(&settings.amqp).merge(worker_topology(
        &settings.amqp,
        &RetryPolicy::from_settings(&settings.weibo),
    ));
    let app = Application::build(settings.clone(), Roles::Worker)
        .await
        .map_err(|e| BenchError::Setup(format!("{e:#}")))?;
    let ready_url = format!("http://{}/readyz", app.address());
    let shutdown = app.shutdown_token();
    let relay = tokio::spawn(app.run_until_stopped());

    let result = async {
        wait_ready(&ready_url).await?;
        drive(&settings, &sandbox, &options).await
    }
    .await;

    shutdown.cancel();
    let _ = relay.await;
    if let Ok(sandbox) = Arc::try_unwrap(sandbox) {
        sandbox.stop().await;
    }
    cleanup(&settings, &topology).await;
    result
}

fn bench_settings(mut settings: Settings, options: &WorkerOptions) -> Settings {
    let run = run_id();
    settings.http.bind = ([127, 0, 0, 1], 0).into();
    settings.amqp.events_exchange = format!("weibo-relay-bench.{run}.events");
    settings.amqp.events_queue = format!("weibo-relay-bench.{run}.orders");
    settings.amqp.fulfilment_queue = format!("weibo-relay-bench.{run}.fulfilment");
    settings.weibo.rate_limit_per_sec = options.rate_limit_per_sec;
    settings.worker.concurrency = options.load.concurrency;
    // Prefetch at least the concurrency, so the consumer is never what holds calls back.
    let prefetch = options
        .load
        .concurrency
        .max(usize::from(settings.worker.prefetch));
    settings.worker.prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
    let secret = |s: &str| SecretString::from(format!("bench-{s}-{run}"));
    settings.merchants = Merchants::new(vec![Merchant {
        appid: APPID.into(),
        sign_key: secret("sign-key"),
        client_id: "772915".into(),
        client_secret: secret("client-secret"),
        uid: "1404376560".into(),
    }]);
    settings
}

/// Waits until the worker holds a broker link and a token (`/readyz` answers 200).
async fn wait_ready(url: &str) -> Result<(), BenchError> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Setup(format!(
        "the worker was not ready within {READY_TIMEOUT:?} (is RabbitMQ running?)"
    )))
}

async fn drive(
    settings: &Settings,
    sandbox: &SandboxHandle,
    options: &WorkerOptions,
) -> Result<Report, BenchError> {
    let events = options.load.events;
    let count = usize::try_from(events).map_err(|_| BenchError::Invalid("--events".into()))?;
    let mut changes = sandbox.subscribe_orders();
    let ids = sandbox.create_orders(APPID, count);
    let conn = Connection::connect(
        settings.amqp.url.expose_secret(),
        ConnectionProperties::default(),
    )
    .await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let started = Instant::now();
    let deadline = started + options.load.max_time;
    let mut sent: HashMap<&str, Instant> = HashMap::with_capacity(count);
    let mut confirms = Vec::with_capacity(count);
    for id in &ids {
        let body = json!({"appid": APPID, "sub_order_id": id, "action": "finish"}).to_string();
        sent.insert(id.as_str(), Instant::now());
        let confirm = channel
            .basic_publish(
                "".into(),
                settings.amqp.fulfilment_queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        if !confirm.await?.is_ack() {
            return Err(BenchError::Setup("the broker nacked a command".into()));
        }
    }

    let mut samples = Samples::default();
    let mut done: HashSet<String> = HashSet::with_capacity(count);
    while done.len() < count && Instant::now() < deadline {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        match change {
            Ok(c) if c.state_code == FINISHED => {
                if let Some(at) = sent.get(c.sub_order_id.as_str()) {
                    samples.record(at.elapsed(), "finished");
                    done.insert(c.sub_order_id);
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                // Missed changes: read the states directly (their latency is approximate).
                for id in &ids {
                    let finished = sandbox
                        .order(APPID, id)
                        .is_some_and(|o| o.state_code == FINISHED);
                    if finished && !done.contains(id) {
                        samples.record(sent[id.as_str()].elapsed(), "finished");
                        done.insert(id.clone());
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
    let elapsed = started.elapsed();
    let _ = conn.close(200, "bench done".into()).await;

    let calls = finish_calls(sandbox).await?;
    let total_calls: u64 = calls.values().sum();
    let mut report = Report::new("worker", options.load.concurrency, events, samples, elapsed);
    for (code, n) in calls {
        report.answers.insert(format!("platform_code_{code}"), n);
    }
    report.rate = Some(RateCheck {
        calls_per_sec: total_calls as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        limit_per_sec: options.rate_limit_per_sec,
        platform_latency_ms: options.latency_ms,
    });
    Ok(report)
}

/// `retailerFinishSub` calls the sandbox answered, by answer code.
async fn finish_calls(sandbox: &SandboxHandle) -> Result<HashMap<String, u64>, BenchError> {
    let counters: serde_json::Value =
        reqwest::get(format!("{}/admin/counters", sandbox.base_url()))
            .await?
            .json()
            .await?;
    let by_code = counters["calls"]["retailerFinishSub"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(code, n)| (code.clone(), n.as_u64().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(by_code)
}

async fn cleanup(settings: &Settings, topology: &Topology) {
    let url = settings.amqp.url.expose_secret();
    let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    if let Ok(channel) = conn.create_channel().await {
        if let Err(error) = topology.delete(&channel).await {
            tracing::warn!(%error, "bench queues not fully deleted");
        }
        let _ = channel.close(200, "bench done".into()).await;
    }
    let _ = conn.close(200, "bench done".into()).await;
}
