//! `weibo-relay-tooling demo`: the sandbox platform, the relay (`serve`) and a sample consumer,
//! end to end on the local RabbitMQ, then a summary. Exits 0 only when every order reached a
//! final state on the sandbox.

mod consumer;
mod report;
mod stock_sync;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;

use tokio_util::sync::CancellationToken;

use crate::sandbox::{Faults, PushSchedule, PushSender, CLOSED, FINISHED};
use crate::stage::{Stage, STAGE_APPID};
use weibo_relay::settings::{Millis, Ranged, Secs, Settings};
use weibo_relay::startup::Roles;

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
/// Reconciliation leaves this long to the pushes: only a state no push brought within it is
/// read back from the order list. Longer than any push of the demo takes (the summary says
/// how long the slowest took), so a state pushed late is never also reconciled.
const SETTLE: Duration = Duration::from_secs(5);
/// Orders created at a time...
const BATCH: usize = 64;
/// ... whenever fewer pushes than this wait to be answered: eight times the sandbox's
/// connections, so the relay is never idle, and at even 300 pushes a second (a busy 2-core
/// machine) a push waits under a second.
const MAX_PUSH_BACKLOG: u64 = 256;

/// Runs the whole demo and returns its report.
pub async fn run(base: Settings, options: DemoOptions) -> anyhow::Result<DemoReport> {
    // Shown to nobody: the client is the demo's own, and only its hash is configured.
    let key = format!("wrg_demo_{}", uuid::Uuid::new_v4().simple());
    let sync_client = stock_sync::client(&key, DEMO_APPID);
    let stage = Stage::tool(base, "weibo-relay-demo")
        .roles(Roles::Serve)
        .faults(options.faults.clone())
        .settings(|settings| {
            // Short retry delays so a transient failure does not stall the demo for minutes.
            settings.weibo.retry_base_ms = const { Millis::new(200).expect("in range") };
            settings.weibo.retry_max_ms = const { Millis::new(2000).expect("in range") };
            // The sandbox has no rate limit of its own; at the production default (50/s)
            // 20,000 orders would take seven minutes of waiting on the limiter.
            settings.weibo.rate_limit_per_sec = const { Ranged::new(1000).expect("in range") };
            // Sweeps every 2 s, leaving the last 5 s to the push, so an outage is recovered
            // from within seconds rather than the production 6 minutes. (Leaving only 1 s
            // made a 20,000-order run reconcile 7,692 states whose pushes were merely late:
            // duplicates, as the summary's "states twice" now shows.)
            settings.reconcile.interval_secs = const { Secs::new(2).expect("in range") };
            settings.reconcile.settle_secs =
                const { Secs::new(SETTLE.as_secs()).expect("in range") };
            settings.reconcile.lookback_secs = const { Secs::new(3600).expect("in range") };
            // The stock-sync client's door: the gateway, on a port of its own.
            settings.gateway.bind = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            settings.gateway.clients = vec![sync_client];
        })
        .start()
        .await?;
    let gateway = stage
        .gateway_url()
        .ok_or_else(|| anyhow::anyhow!("the demo's relay runs no gateway"))?
        .to_owned();
    let sync = stock_sync::StockSync::start(gateway, key, DEMO_APPID.to_owned());
    let result = drive(
        stage.settings(),
        stage.sandbox(),
        stage.relay_url(),
        &options,
        sync,
    )
    .await;
    stage.stop().await;
    result
}

async fn drive(
    settings: &Settings,
    sandbox: &Arc<crate::sandbox::SandboxHandle>,
    relay_url: &str,
    options: &DemoOptions,
    sync: stock_sync::StockSync,
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
    let mut created: HashMap<String, Instant> = HashMap::with_capacity(options.orders);
    let mut finals: HashMap<String, (u16, Duration)> = HashMap::new();
    let progress = report::Progress::new(options.orders, options.progress_bar);
    let deadline = started.later(options.timeout);
    let stats = sender.stats().clone();

    while (created.len() < options.orders || finals.len() < created.len())
        && Instant::now() < deadline
    {
        // Orders come as a shop's do, not all in one instant: a new batch whenever the
        // platform's pushes are nearly caught up, so no push arrives later than the
        // reconciliation leaves to pushes (SETTLE).
        let pushed = stats.accepted.load(Ordering::Relaxed) + stats.gave_up.load(Ordering::Relaxed);
        let backlog = ((created.len() + finals.len()) as u64).saturating_sub(pushed);
        if created.len() < options.orders && backlog < MAX_PUSH_BACKLOG {
            let batch = BATCH.min(options.orders - created.len());
            let now = Instant::now();
            created.extend(
                sandbox
                    .create_orders(DEMO_APPID, batch)
                    .into_iter()
                    .map(|id| (id, now)),
            );
        }
        let change = tokio::select! {
            _ = options.interrupt.cancelled() => break,
            change = changes.recv() => change,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                progress.update(finals.len(), stats.accepted.load(Ordering::Relaxed));
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
        progress.update(finals.len(), stats.accepted.load(Ordering::Relaxed));
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

    let synced = sync.stop().await;
    let metrics = reqwest::get(format!("{relay_url}/metrics"))
        .await?
        .text()
        .await?;
    let mut report = DemoReport::gather(
        options.orders,
        &finals,
        sender.stats(),
        &consumer.stats(),
        &metrics,
        started.elapsed(),
        options.interrupt.is_cancelled(),
    );
    report.gateway_calls = synced.calls.load(Ordering::Relaxed);
    report.gateway_not_ok = synced.not_ok.load(Ordering::Relaxed);
    sender.stop().await;
    consumer.stop().await;
    Ok(report)
}
