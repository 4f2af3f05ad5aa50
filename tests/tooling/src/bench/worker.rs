//! `bench worker`: N finish commands through a worker process against the sandbox with a set
//! latency; reports calls per second against `weibo.rate_limit_per_sec`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;

use lapin::BasicProperties;
use serde_json::json;

use super::{BenchError, Load, RateCheck, Report, Samples};
use crate::sandbox::{Faults, SandboxHandle, FINISHED};
use crate::stage::{Stage, STAGE_APPID};
use weibo_relay::settings::{OutOfRange, Ranged, Settings};
use weibo_relay::startup::Roles;

const APPID: &str = STAGE_APPID;

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
    let invalid = |flag: &str, e: OutOfRange| BenchError::Invalid(format!("{flag} {e}"));
    let rate_limit = Ranged::try_from(u64::from(options.rate_limit_per_sec))
        .map_err(|e| invalid("--rate-limit", e))?;
    let concurrency = u64::try_from(options.load.concurrency)
        .unwrap_or(u64::MAX)
        .try_into()
        .map_err(|e| invalid("--concurrency", e))?;
    let stage = Stage::tool(base, "weibo-relay-bench")
        .roles(Roles::Worker)
        .faults(Faults {
            latency_ms: options.latency_ms,
            ..Faults::default()
        })
        .settings(move |settings| {
            settings.weibo.rate_limit_per_sec = rate_limit;
            settings.worker.concurrency = concurrency;
            // Prefetch at least the concurrency, so the consumer never holds calls back (the
            // concurrency's range is within the prefetch's).
            let prefetch = concurrency.get().max(settings.worker.prefetch.get());
            if let Ok(prefetch) = prefetch.try_into() {
                settings.worker.prefetch = prefetch;
            }
        })
        .start()
        .await
        .map_err(|e| BenchError::Setup(format!("{e:#}")))?;
    let result = drive(stage.settings(), stage.sandbox(), &options).await;
    stage.stop().await;
    result
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
    let conn = weibo_relay::amqp::connect_once(&settings.amqp, "weibo-relay bench worker")
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let channel = weibo_relay::amqp::confirm_channel(&conn).await?;

    let started = Instant::now();
    let deadline = started.later(options.load.max_time);
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| json!({"appid": APPID, "sub_order_id": id, "action": "finish"}).to_string())
        .collect();
    let sent: HashMap<&str, Instant> = ids.iter().map(|id| (id.as_str(), Instant::now())).collect();
    // All in flight at once, each confirmed.
    let publishes = bodies.iter().map(|body| {
        weibo_relay::amqp::publish_confirmed(
            &channel,
            weibo_relay::amqp::Outgoing {
                exchange: "",
                routing_key: &settings.amqp.fulfilment_queue,
                body: body.as_bytes(),
                properties: BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            },
        )
    });
    futures_util::future::try_join_all(publishes)
        .await
        .map_err(|e| BenchError::Setup(format!("a command was not stored: {e}")))?;

    let mut samples = Samples::default();
    let mut done: HashSet<String> = HashSet::with_capacity(count);
    while done.len() < count && Instant::now() < deadline {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        match change {
            Some(c) if c.state_code == FINISHED => {
                if let Some(at) = sent.get(c.sub_order_id.as_str()) {
                    samples.record(at.elapsed(), "finished");
                    done.insert(c.sub_order_id);
                }
            }
            Some(_) => {}
            None => break,
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
