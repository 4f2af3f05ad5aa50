//! `weibo-relay-tooling demo`: the sandbox platform, the relay (`serve`) and a sample consumer,
//! end to end on the local RabbitMQ, then a summary. Exits 0 only when every order reached a
//! final state on the sandbox.

mod consumer;
pub mod provider;
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
pub use report::{percentile, DemoReport, MerchantLine};

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
    /// Service-provider mode: this many merchants onboarded, their orders spread among them.
    pub provider_merchants: Option<usize>,
    /// Provider mode: the PostgreSQL server the run's database is made on.
    pub store_server: String,
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
            provider_merchants: None,
            store_server: provider::DEFAULT_SERVER.to_owned(),
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
    let setup = match options.provider_merchants {
        Some(_) => Some(provider::ProviderSetup::create(&options.store_server).await?),
        None => None,
    };
    let result = staged(base, &options, setup.as_ref()).await;
    if let Some(setup) = setup {
        setup.drop_database().await;
    }
    result
}

/// The demo on a stage of its own (provider mode: with `setup`'s store and app).
async fn staged(
    base: Settings,
    options: &DemoOptions,
    setup: Option<&provider::ProviderSetup>,
) -> anyhow::Result<DemoReport> {
    // Shown to nobody: the client is the demo's own, and only its hash is configured.
    let key = format!("wrg_demo_{}", uuid::Uuid::new_v4().simple());
    let sync_client = stock_sync::client(&key, DEMO_APPID);
    let mut builder = Stage::tool(base, "weibo-relay-demo");
    if let Some(setup) = setup {
        builder = builder.provider(setup.provider.clone(), setup.bind, setup.app.clone());
    }
    // The platform gateway serves self-developed mode: provider mode has no stock sync.
    let gateway = setup.is_none();
    let stage = builder
        .roles(Roles::Serve)
        .faults(options.faults.clone())
        .settings(move |settings| {
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
            if gateway {
                // The stock-sync client's door: the gateway, on a port of its own.
                settings.gateway.bind = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
                settings.gateway.clients = vec![sync_client];
            }
        })
        .start()
        .await?;
    let sync = match (gateway, stage.gateway_url()) {
        (true, Some(url)) => Some(stock_sync::StockSync::start(
            url.to_owned(),
            key,
            DEMO_APPID.to_owned(),
        )),
        (true, None) => {
            stage.stop().await;
            anyhow::bail!("the demo's relay runs no gateway");
        }
        (false, _) => None,
    };
    let result = drive(
        stage.settings(),
        stage.sandbox(),
        stage.relay_url(),
        options,
        (setup, sync),
    )
    .await;
    stage.stop().await;
    result
}

/// Waits until the relay counts `count` merchants authorized: it reloads the uids its pushes
/// are checked against in the same pass, so from then on their pushes are taken.
async fn authorized(relay_url: &str, count: usize) -> anyhow::Result<()> {
    let line = "weibo_relay_provider_merchants{status=\"authorized\"}";
    let deadline = Instant::now().later(Duration::from_secs(30));
    loop {
        let metrics = reqwest::get(format!("{relay_url}/metrics"))
            .await?
            .text()
            .await?;
        if report::metric(&metrics, line) >= count as u64 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not count {count} merchants authorized within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn drive(
    settings: &Settings,
    sandbox: &Arc<crate::sandbox::SandboxHandle>,
    relay_url: &str,
    options: &DemoOptions,
    (setup, sync): (
        Option<&provider::ProviderSetup>,
        Option<stock_sync::StockSync>,
    ),
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
    // Provider mode, once the consumer listens (it hears each merchant.authorized).
    let merchants = match (setup, options.provider_merchants) {
        (Some(setup), Some(count)) => {
            eprintln!("demo: onboarding {count} merchants through the consent page");
            let merchants = setup.onboard(sandbox, count).await?;
            authorized(relay_url, merchants.len()).await?;
            merchants
        }
        _ => Vec::new(),
    };
    let merchants = merchants.as_slice();
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
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut batches = 0usize;
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
            // Provider mode: smaller batches, each for the next merchant in turn.
            let per_turn = (BATCH / merchants.len().max(1)).max(1);
            let batch = per_turn.min(options.orders - created.len());
            let now = Instant::now();
            let ids = match merchants.get(batches % merchants.len().max(1)) {
                Some(merchant) => {
                    let ids = sandbox.create_merchant_orders(DEMO_APPID, &merchant.uid, batch);
                    owners.extend(ids.iter().map(|id| (id.clone(), batches % merchants.len())));
                    ids
                }
                None => sandbox.create_orders(DEMO_APPID, batch),
            };
            batches += 1;
            created.extend(ids.into_iter().map(|id| (id, now)));
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

    let synced = match sync {
        Some(sync) => Some(sync.stop().await),
        None => None,
    };
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
    report.merchants = merchants
        .iter()
        .enumerate()
        .map(|(i, m)| MerchantLine {
            merchant_ref: m.merchant_ref.clone(),
            uid: m.uid.clone(),
            orders: owners.values().filter(|o| **o == i).count(),
            finals: owners
                .iter()
                .filter(|(id, o)| **o == i && finals.contains_key(*id))
                .count(),
        })
        .collect();
    if let Some(synced) = synced {
        report.gateway_calls = synced.calls.load(Ordering::Relaxed);
        report.gateway_not_ok = synced.not_ok.load(Ordering::Relaxed);
    }
    sender.stop().await;
    consumer.stop().await;
    Ok(report)
}
