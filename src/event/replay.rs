//! `weibo-relay events replay`: the event log re-fed to a queue, each event with its own
//! routing key, properties and headers.
//!
//! A queue keeps no routing key of its own, so the events go through a temporary topic
//! exchange of the relay's (`<events_exchange>.replay.<id>`, named from the configured names
//! like everything the relay declares), bound to the target queue with `#`, and published
//! there with the routing key each was logged with. The exchange is deleted at the end,
//! also when the replay fails or is interrupted.

use std::time::{Duration, Instant, SystemTime};

use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ExchangeKind};
use tokio_util::sync::CancellationToken;

use super::log::{Accept, LogEntry, LogError, LogReader, Skipped};
use super::topic::TopicPattern;
use crate::amqp::{Broker, Names, Outgoing, Topology};
use crate::ids::AppId;
use crate::keys::Keyring;
use crate::settings::Settings;
use crate::supervise::{TaskMetrics, Tasks};

/// How often a long replay says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to replay, and where.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Events received from this time on.
    pub since: SystemTime,
    /// ... up to this time.
    pub until: SystemTime,
    /// Only this merchant's.
    pub appid: Option<AppId>,
    /// Only this sub order's.
    pub sub_order_id: Option<String>,
    /// Only events whose routing key matches, as a topic binding would.
    pub routing_key: Option<TopicPattern>,
    /// The queue to publish them to (it must exist).
    pub to_queue: String,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events of this deployment read from the log.
    pub read: u64,
    /// Events published to the queue (and confirmed).
    pub published: u64,
    /// Entries of the log the relay did not seal: skipped, never published.
    pub skipped: Skipped,
    /// Stopped early by the caller.
    pub interrupted: bool,
}

/// Why a replay or a tail stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No broker: which node was tried and why it failed.
    #[error("{0}")]
    Broker(String),
    /// No merchant configured: no entry of the log could be told genuine.
    #[error("no [[merchants]] in the configuration: the event log's entries are sealed with the merchants' keys, so none could be read")]
    NoMerchants,
    /// The target queue is not there.
    #[error("queue {0:?} does not exist: declare it (and bind nothing: replay binds it to an exchange of its own for the time of the replay), then replay again")]
    NoSuchQueue(String),
    /// The temporary exchange could not be declared or bound to the queue.
    #[error("cannot route replayed events to {queue:?} through {exchange:?} (this user needs configure, write and read on the exchange, and write on the queue): {source}")]
    Route {
        /// The queue.
        queue: String,
        /// The temporary exchange.
        exchange: String,
        /// The broker's refusal.
        source: Box<lapin::Error>,
    },
    /// The log could not be read.
    #[error("event log {log:?} not read: {source}")]
    Log {
        /// The stream.
        log: String,
        /// Why.
        source: LogError,
    },
    /// An event was not taken by the queue.
    #[error("event {published_so_far} not stored in {queue:?}: {source}")]
    Publish {
        /// The queue.
        queue: String,
        /// Events stored before this one.
        published_so_far: u64,
        /// Why.
        source: crate::amqp::PublishError,
    },
}

/// A connection of its own, for the duration of one command.
pub(super) async fn connect(settings: &Settings) -> Result<Broker, ReplayError> {
    // One attempt first: an operator learns at once, in words, why no node took it.
    let probe = crate::amqp::connect_once(&settings.amqp, "weibo-relay events")
        .await
        .map_err(|e| ReplayError::Broker(e.to_string()))?;
    let _ = probe.close(200, "probed".into()).await;
    let tasks = Tasks::new(TaskMetrics::unregistered());
    let broker = Broker::start(&settings.amqp, Topology::default(), &tasks);
    if broker.wait_ready(Duration::from_secs(10)).await {
        Ok(broker)
    } else {
        broker.shutdown().await;
        Err(not_connected(settings))
    }
}

pub(super) fn not_connected(settings: &Settings) -> ReplayError {
    ReplayError::Broker(format!(
        "cannot connect to the broker at {}",
        settings.amqp.redacted_url()
    ))
}

/// The keys an operator command checks the log's seals with.
pub(super) fn keys(settings: &Settings) -> Result<Keyring, ReplayError> {
    if settings.merchants.is_empty() {
        return Err(ReplayError::NoMerchants);
    }
    Ok(Keyring::derive(&settings.merchants))
}

/// Re-publishes the matching events of the log to `options.to_queue`, each with its own
/// routing key, properties and headers, confirmed one by one; calls `progress` now and then
/// on long replays; stops early, cleaning up, when `stop` is cancelled.
pub async fn replay(
    settings: &Settings,
    options: &ReplayOptions,
    mut progress: impl FnMut(ReplayReport),
    stop: &CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    let keys = keys(settings)?;
    let broker = connect(settings).await?;
    let result = replay_on(&broker, settings, keys, options, &mut progress, stop).await;
    broker.shutdown().await;
    result
}

async fn replay_on(
    broker: &Broker,
    settings: &Settings,
    keys: Keyring,
    options: &ReplayOptions,
    progress: &mut impl FnMut(ReplayReport),
    stop: &CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    let link = broker.current().ok_or_else(|| not_connected(settings))?;
    let connection = link.connection();
    let names = Names::new(&settings.amqp);
    let log = names.event_log().to_owned();
    let log_error = |source: LogError| ReplayError::Log {
        log: log.clone(),
        source,
    };
    let target = crate::amqp::topology::queue_depth(connection, &options.to_queue)
        .await
        .map_err(|e| log_error(e.into()))?;
    if target.is_none() {
        return Err(ReplayError::NoSuchQueue(options.to_queue.clone()));
    }
    let exchange = names.replay_exchange(&uuid::Uuid::new_v4().simple().to_string());
    let result =
        match route(connection, &exchange, &options.to_queue).await {
            Ok(()) => {
                let accept = Accept {
                    keys,
                    max_entry_bytes: None,
                };
                let publisher = broker.publisher();
                let copied =
                    match LogReader::to_end(connection, &publisher, &log, options.since, accept)
                        .await
                    {
                        Ok(reader) => {
                            copy(reader, &publisher, &exchange, options, progress, stop).await
                        }
                        Err(source) => Err(Copy::Log(source)),
                    };
                publisher.close().await;
                copied.map_err(|e| match e {
                    Copy::Log(source) => log_error(source),
                    Copy::Publish(e) => e,
                })
            }
            Err(source) => Err(ReplayError::Route {
                queue: options.to_queue.clone(),
                exchange: exchange.clone(),
                source: Box::new(source),
            }),
        };
    unroute(connection, &exchange).await;
    result
}

/// Declares the temporary exchange and binds the target queue to it for every key.
async fn route(connection: &Connection, exchange: &str, queue: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            // Deleted by the broker too should the queue go away first.
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "replay routed".into()).await;
    Ok(())
}

/// Deletes the temporary exchange (and with it its binding), on a channel of its own: the
/// one that failed may be closed.
async fn unroute(connection: &Connection, exchange: &str) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    if let Err(error) = channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
    {
        tracing::warn!(%exchange, %error, "replay exchange not deleted");
        return;
    }
    let _ = channel.close(200, "replay done".into()).await;
}

enum Copy {
    Log(LogError),
    Publish(ReplayError),
}

/// Publishes what `reader` returns that `options` select to `exchange`; closes `reader`.
async fn copy(
    mut reader: LogReader,
    publisher: &crate::amqp::Publisher,
    exchange: &str,
    options: &ReplayOptions,
    progress: &mut impl FnMut(ReplayReport),
    stop: &CancellationToken,
) -> Result<ReplayReport, Copy> {
    let mut report = ReplayReport::default();
    let mut last_progress = Instant::now();
    let result = loop {
        let entry = tokio::select! {
            () = stop.cancelled() => {
                report.interrupted = true;
                break Ok(());
            }
            entry = reader.next() => entry,
        };
        report.skipped = reader.skipped();
        let entry = match entry {
            Ok(Some(entry)) => entry,
            Ok(None) => break Ok(()),
            Err(source) => break Err(Copy::Log(source)),
        };
        // Sealed, so the time is the relay's own: a stranger's entry cannot end a replay.
        if entry.received_at > options.until {
            break Ok(());
        }
        report.read = report.read.saturating_add(1);
        if entry.received_at < options.since || !matches(&entry, options) {
            continue;
        }
        let delivery = &entry.delivery;
        let published = publisher
            .publish(Outgoing {
                exchange,
                routing_key: delivery.routing_key.as_str(),
                body: &delivery.data,
                properties: as_logged(&delivery.properties),
            })
            .await;
        if let Err(source) = published {
            break Err(Copy::Publish(ReplayError::Publish {
                queue: options.to_queue.clone(),
                published_so_far: report.published,
                source,
            }));
        }
        report.published = report.published.saturating_add(1);
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(report);
        }
    };
    reader.close().await;
    result.map(|()| report)
}

/// The properties an event was published with: the stream's own `x-stream-offset` removed.
fn as_logged(properties: &BasicProperties) -> BasicProperties {
    let mut out = properties.clone();
    if let Some(headers) = properties.headers() {
        let kept: std::collections::BTreeMap<_, _> = headers
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-stream-offset")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out = out.with_headers(FieldTable::from(kept));
    }
    out
}

/// A header's text, when it is a long string.
pub(super) fn header<'a>(entry: &'a LogEntry, name: &str) -> Option<&'a [u8]> {
    match entry
        .delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(name)?
    {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The envelope's `sub_order_id`, read without building the whole body.
fn sub_order_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        sub_order_id: Option<String>,
    }
    serde_json::from_slice::<Envelope>(body).ok()?.sub_order_id
}

fn matches(entry: &LogEntry, options: &ReplayOptions) -> bool {
    options.appid.as_ref().is_none_or(|a| *a == entry.appid)
        && options
            .routing_key
            .as_ref()
            .is_none_or(|p| p.matches(entry.delivery.routing_key.as_str()))
        && options
            .sub_order_id
            .as_ref()
            .is_none_or(|id| sub_order_id(&entry.delivery.data).as_ref() == Some(id))
}
