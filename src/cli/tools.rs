//! The tool commands: sandbox, dlq, demo, bench.

use std::path::PathBuf;

use super::args::{BenchKind, DlqAction, EventsAction, SandboxArgs};
use super::{init_telemetry, load, wait_for_signal};

pub(super) fn sandbox(config: Option<PathBuf>, args: SandboxArgs) -> anyhow::Result<()> {
    use crate::sandbox::{Faults, PushSchedule, PushSender, Sandbox, SandboxConfig};
    let settings = load(config)?;
    if settings.merchants.is_empty() {
        anyhow::bail!("the sandbox needs at least one [[merchants]] entry in the configuration");
    }
    let _telemetry = init_telemetry();
    let mut sandbox_config = SandboxConfig::new(settings.merchants);
    sandbox_config.bind = args.bind;
    sandbox_config.token_ttl = std::time::Duration::from_secs(args.token_ttl);
    sandbox_config.faults = Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        rate_limit_per_sec: args.rate_limit_per_sec,
        error_envelope: args.error_envelope,
        ..Faults::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let handle = std::sync::Arc::new(Sandbox::start(sandbox_config)?);
        println!("oauth_base = \"{}\"", handle.base_url());
        println!("api_base = \"{}\"", handle.api_base());
        let sender = args.push_to.map(|url| {
            println!("pushing order changes to {url}");
            PushSender::start(&handle, url, PushSchedule::scaled(args.time_scale))
        });
        wait_for_signal().await;
        if let Some(sender) = sender {
            sender.stop().await;
        }
        if let Ok(handle) = std::sync::Arc::try_unwrap(handle) {
            handle.stop().await;
        }
        Ok(())
    })
}

pub(super) fn check(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lines = runtime.block_on(crate::check::run(&settings));
    let failed = lines
        .iter()
        .filter(|l| l.verdict == crate::check::Verdict::Fail)
        .count();
    for line in &lines {
        println!("{line}");
    }
    anyhow::ensure!(failed == 0, "{failed} of {} checks failed", lines.len());
    Ok(())
}

pub(super) fn dlq(config: Option<PathBuf>, action: DlqAction) -> anyhow::Result<()> {
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let amqp = &settings.amqp;
        match action {
            DlqAction::List { limit, json } => {
                let dead = crate::worker::dlq::list(amqp, limit).await?;
                for d in &dead {
                    if json {
                        println!("{}", serde_json::to_string(d)?);
                    } else {
                        println!(
                            "id={} attempts={} last_code={} reason={:?} command={}",
                            d.id,
                            d.attempts,
                            d.last_code.as_deref().unwrap_or("none"),
                            d.reason.as_deref().unwrap_or(""),
                            d.body
                        );
                    }
                }
                if !json && dead.is_empty() {
                    eprintln!(
                        "no dead letters in {}",
                        crate::worker::retry::dead_queue(&amqp.fulfilment_queue)
                    );
                } else if !json {
                    eprintln!("{} dead command(s) listed", dead.len());
                }
            }
            DlqAction::Redrive { limit } => {
                let moved = crate::worker::dlq::redrive(amqp, limit.unwrap_or(usize::MAX)).await?;
                println!("{moved} command(s) moved back to {}", amqp.fulfilment_queue);
            }
            DlqAction::Drop { id } => {
                let queue = crate::worker::retry::dead_queue(&amqp.fulfilment_queue);
                anyhow::ensure!(
                    crate::worker::dlq::drop(amqp, &id).await?,
                    "no dead command with id {} in {queue}",
                    crate::telemetry::shown(&id)
                );
                println!("dropped {id} from {queue}");
            }
        }
        Ok(())
    })
}

pub(super) fn demo(
    config: Option<PathBuf>,
    orders: usize,
    outage: Option<u64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(orders > 0, "--orders must be at least 1");
    let settings = load(config)?;
    let _telemetry = if std::env::var_os("RUST_LOG").is_none() {
        // The summary is the demo's output; only warnings and errors interleave with it.
        crate::telemetry::init_with_default(false, "warn")
    } else {
        init_telemetry()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut options = crate::demo::DemoOptions::new(orders);
    options.outage = outage.map(std::time::Duration::from_secs);
    let interrupt = options.interrupt.clone();
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            wait_for_signal().await;
            interrupt.cancel();
        });
        crate::demo::run(settings, options).await
    })?;
    println!("{report}");
    anyhow::ensure!(!report.interrupted, "interrupted");
    anyhow::ensure!(report.complete(), "not every order reached a final state");
    Ok(())
}

pub(super) fn bench(config: Option<PathBuf>, kind: BenchKind) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let settings = load(config)?;
    let _telemetry = if std::env::var_os("RUST_LOG").is_none() {
        // The report is the output; only warnings and errors interleave with it.
        crate::telemetry::init_with_default(false, "warn")
    } else {
        init_telemetry()
    };
    let amqp_url =
        |url: Option<String>| url.unwrap_or_else(|| settings.amqp.url.expose_secret().to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (report, json) = match kind {
        BenchKind::Push {
            url,
            appid,
            sign_key,
            verify_queue,
            amqp_url: amqp,
            load,
        } => {
            let options = crate::bench::PushOptions {
                url,
                appid,
                sign_key,
                load: load.load(),
                verify_queue,
                amqp_url: amqp_url(amqp),
            };
            (runtime.block_on(crate::bench::push(options))?, load.json)
        }
        BenchKind::Broker {
            amqp_url: amqp,
            load,
        } => {
            let options = crate::bench::BrokerOptions {
                amqp_url: amqp_url(amqp),
                load: load.load(),
            };
            (runtime.block_on(crate::bench::broker(options))?, load.json)
        }
        BenchKind::Worker {
            latency_ms,
            rate_limit,
            load,
        } => {
            let options = crate::bench::WorkerOptions {
                load: load.load(),
                latency_ms,
                rate_limit_per_sec: rate_limit.unwrap_or(settings.weibo.rate_limit_per_sec),
            };
            let settings = settings.clone();
            (
                runtime.block_on(crate::bench::worker(settings, options))?,
                load.json,
            )
        }
    };
    // writeln, not println: a closed pipe (`| head`) is an error to report, not a panic.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        writeln!(out, "{report}")?;
    }
    Ok(())
}

pub(super) fn events(config: Option<PathBuf>, action: EventsAction) -> anyhow::Result<()> {
    use crate::event::replay::{replay, tail, ReplayOptions};
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match action {
            EventsAction::Replay {
                since,
                until,
                appid,
                sub_order_id,
                to_queue,
            } => {
                let now = std::time::SystemTime::now();
                let options = ReplayOptions {
                    since: now - since,
                    until: now - until.unwrap_or_default(),
                    appid,
                    sub_order_id,
                    to_queue,
                };
                let report = replay(&settings, &options, |so_far| {
                    eprintln!(
                        "replay: {} published, {} read so far",
                        so_far.published, so_far.read
                    );
                })
                .await?;
                println!(
                    "{} event(s) replayed to {} ({} read from the log)",
                    report.published, options.to_queue, report.read
                );
            }
            EventsAction::Tail { appid } => {
                let stop = tokio_util::sync::CancellationToken::new();
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    on_signal.cancel();
                });
                let mut out = std::io::stdout().lock();
                tail(&settings, appid.as_deref(), &mut out, stop).await?;
            }
        }
        Ok(())
    })
}
