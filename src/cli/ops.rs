//! The operator commands: check, dlq, events.

use std::path::PathBuf;

use super::args::{DlqAction, EventsAction};
use super::{load, stop_signal};

pub(super) fn check(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lines = runtime.block_on(crate::check::run(&settings));
    let failed = lines
        .iter()
        .filter(|l| l.status == crate::check::Status::Fail)
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
                        // Id, reason and body are whatever was published to the queue: escaped,
                        // so that none can move the cursor, colour the screen or fake a line.
                        println!(
                            "id={} attempts={} last_code={} reason={:?} command={}",
                            crate::worker::dlq::shown_id(&d.id),
                            d.attempts,
                            d.last_code
                                .map_or_else(|| "null".to_owned(), |c| c.to_string()),
                            d.reason.as_deref().unwrap_or(""),
                            crate::telemetry::printable(&d.body)
                        );
                    }
                }
                if !json && dead.is_empty() {
                    eprintln!(
                        "no dead letters in {}",
                        crate::amqp::Names::new(amqp).dead().to_owned()
                    );
                } else if !json {
                    eprintln!("{} dead command(s) listed", dead.len());
                }
            }
            DlqAction::Redrive { limit } => {
                let dead = crate::amqp::Names::new(amqp).dead().to_owned();
                let done = crate::worker::dlq::redrive(amqp, limit.unwrap_or(usize::MAX)).await?;
                println!(
                    "{} command(s) moved back to {}, each once ({} in {dead} when it started)",
                    done.moved, amqp.fulfilment_queue, done.held
                );
                if done.returned > 0 {
                    println!(
                        "{} of them failed again meanwhile and are back in {dead}: not moved twice",
                        done.returned
                    );
                }
            }
            DlqAction::Drop { id } => {
                let queue = crate::amqp::Names::new(amqp).dead().to_owned();
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

pub(super) fn events(config: Option<PathBuf>, action: EventsAction) -> anyhow::Result<()> {
    use crate::event::replay::{replay, ReplayOptions};
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    runtime.block_on(async move {
        let on_signal = stop.clone();
        let signal = stop_signal();
        tokio::spawn(async move {
            signal.await;
            on_signal.cancel();
        });
        match action {
            EventsAction::Replay {
                since,
                until,
                appid,
                sub_order_id,
                routing_key,
                to_queue,
            } => {
                let now = std::time::SystemTime::now();
                let ago = |flag: &str, d: std::time::Duration| {
                    now.checked_sub(d).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--{flag} {} reaches back before any time this machine can name: give a shorter duration",
                            humantime::format_duration(d)
                        )
                    })
                };
                let options = ReplayOptions {
                    since: ago("since", since)?,
                    until: ago("until", until.unwrap_or_default())?,
                    appid,
                    sub_order_id,
                    routing_key,
                    to_queue,
                };
                let progress = |so_far: crate::event::replay::ReplayReport| {
                    eprintln!(
                        "replay: {} published, {} read so far",
                        so_far.published, so_far.read
                    );
                };
                let report = replay(&settings, &options, progress, &stop).await?;
                let skipped = report.skipped.total();
                let skipped = if skipped > 0 {
                    format!("; {skipped} entries skipped: not sealed by this deployment")
                } else {
                    String::new()
                };
                println!(
                    "{} event(s) replayed to {} ({} read from the log{skipped})",
                    report.published, options.to_queue, report.read
                );
                anyhow::ensure!(!report.interrupted, "replay interrupted");
            }
            EventsAction::Tail { appid } => {
                let mut out = std::io::stdout().lock();
                let mut notices = std::io::stderr();
                let report = crate::event::tail::tail(
                    &settings,
                    appid.as_ref(),
                    &mut out,
                    &mut notices,
                    stop,
                )
                .await?;
                if report.skipped > 0 {
                    eprintln!(
                        "tail: {} event(s) shown; {} entries skipped: not sealed by this deployment",
                        report.shown, report.skipped
                    );
                }
            }
        }
        Ok(())
    })
}
