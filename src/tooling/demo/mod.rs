//! `weibo-relay demo`: the sandbox platform, the relay (`serve`) and a sample consumer, end
//! to end on the local RabbitMQ, then a summary. Exits 0 only when every order reached a
//! final state on the sandbox.

mod consumer;
mod report;

use crate::clock::Later;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::startup::Roles;
use crate::tooling::sandbox::{Faults, PushSchedule, PushSender, CLOSED, FINISHED};
use crate::tooling::stage::{Stage, STAGE_APPID};

pub use consumer::{ConsumerStats, SampleConsumer};
pub use report::{percentile, DemoReport};

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Orders to create and push.
    pub orders: usize,
    /// Every n-th order (by id) is closed instead of finished.
    pub close_every: u64,
    /// Give up waiting for final states after this long.
    pub timeout: Duration,
    /// Show a progress bar (else plain lines).
    pub progress_bar: bool,
    /// Cancelled to stop early (SIGINT/SIGTERM): the summary so far, then clean-up.
    pub interrupt: CancellationToken,
    /// The platform gives up on every push for this long from the start, as after an outage
    /// longer than its redelivery window: those states arrive through reconciliation.
    pub outage: Option<Duration>,
    /// What the platform does besides answering: its error envelope, a rate limit.
    pub faults: Faults,
}

impl DemoOptions {
    /// `orders` orders, a bar when stderr is a terminal.
    pub fn new(orders: usize) -> Self {
        Self {
            orders,
            close_every: 10,
            timeout: Duration::from_secs(60 + orders as u64 / 5),
            progress_bar: std::io::stderr().is_terminal(),
            interrupt: CancellationToken::new(),
            outage: None,
            faults: Faults::default(),
        }
    }
}

const DEMO_APPID: &str = STAGE_APPID;

/// Runs the whole demo and returns its report.
pub async fn run(base: Settings, options: DemoOptions) -> anyhow::Result<DemoReport> {
    let stage = Stage::start(
        base,
        "weibo-relay-demo",
        Roles::Serve,
        options.faults.clone(),
        |settings| {
            // Short retry delays so a transient failure does not stall the demo for minutes.
            settings.weibo.retry_base_ms = 200;
            settings.weibo.retry_max_ms = 2000;
            // The sandbox has no rate limit of its own; at the production default (50/s)
            // 20,000 orders would take seven minutes of waiting on the limiter.
            settings.weibo.rate_limit_per_sec = 1000;
            // Sweeps every 2 s, leaving only the last second to the push, so an outage is
            // recovered from within seconds rather than the production 5 minutes.
            settings.reconcile.interval_secs = 2;
            settings.reconcile.settle_secs = 1;
            settings.reconcile.lookback_secs = 3600;
        },
    )
    .await?;
    let result = drive(
        stage.settings(),
        stage.sandbox(),
        stage.relay_url(),
        &options,
    )
    .await;
    stage.stop().await;
    result
}

async fn drive(
    settings: &Settings,
    sandbox: &Arc<crate::tooling::sandbox::SandboxHandle>,
    relay_url: &str,
    options: &DemoOptions,
) -> anyhow::Result<DemoReport> {
    eprintln!(
        "demo: sandbox at {}, relay at {relay_url}, queues {}* (deleted at the end)",
        sandbox.base_url(),
        settings
            .amqp
            .fulfilment_queue
            .trim_end_matches("fulfilment")
    );
    let consumer = SampleConsumer::start(&settings.amqp, options.close_every).await?;
    let push_url = format!("{relay_url}{}", settings.push.path);
    let sender = PushSender::start(sandbox, push_url, PushSchedule::scaled(0.01));
    let mut changes = sandbox.subscribe_orders();

    if let Some(outage) = options.outage {
        sandbox.start_outage(outage);
        eprintln!(
            "demo: the platform gives up on every push for {} s; reconciliation recovers them",
            outage.as_secs()
        );
    }
    let started = Instant::now();
    let ids = sandbox.create_orders(DEMO_APPID, options.orders);
    let created: HashMap<String, Instant> = ids.iter().map(|id| (id.clone(), started)).collect();
    let mut finals: HashMap<String, (u16, Duration)> = HashMap::new();
    let progress = report::Progress::new(options.orders, options.progress_bar);
    let deadline = started.later(options.timeout);

    while finals.len() < created.len() && Instant::now() < deadline {
        let change = tokio::select! {
            _ = options.interrupt.cancelled() => break,
            change = changes.recv() => change,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                progress.update(finals.len(), sender.stats().accepted.load(Ordering::Relaxed));
                continue;
            }
        };
        match change {
            Some(c) if (c.state_code == FINISHED || c.state_code == CLOSED) => {
                if let Some(at) = created.get(&c.sub_order_id) {
                    finals
                        .entry(c.sub_order_id)
                        .or_insert((c.state_code, at.elapsed()));
                }
            }
            Some(_) => {}
            None => break,
        }
        progress.update(
            finals.len(),
            sender.stats().accepted.load(Ordering::Relaxed),
        );
    }
    progress.finish(finals.len());
    // The final-state pushes are still being answered: let them land before counting.
    let settle_until = if options.interrupt.is_cancelled() {
        Instant::now()
    } else {
        Instant::now().later(Duration::from_secs(5))
    };
    // Each order is pushed twice: paid, then finished or closed.
    let expected = 2 * options.orders as u64;
    let stats = sender.stats();
    while (stats.events.load(Ordering::Relaxed) < expected || stats.pending() > 0)
        && Instant::now() < settle_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let metrics = reqwest::get(format!("{relay_url}/metrics"))
        .await?
        .text()
        .await?;
    let report = DemoReport::gather(
        options.orders,
        &finals,
        sender.stats(),
        &consumer.stats(),
        &metrics,
        started.elapsed(),
        options.interrupt.is_cancelled(),
    );
    sender.stop().await;
    consumer.stop().await;
    Ok(report)
}
