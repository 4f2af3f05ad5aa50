//! `weibo-relay events replay` and `events tail`: the event log re-fed to a queue, or shown.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use super::log::{received_at, LogError, LogReader, Offset};
use super::{APPID_HEADER, SOURCE_HEADER};
use crate::amqp::{topology::event_log, Broker, Outgoing, Topology};
use crate::config::Settings;

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
    pub appid: Option<String>,
    /// Only this sub order's.
    pub sub_order_id: Option<String>,
    /// The queue to publish them to (through the default exchange; it must exist).
    pub to_queue: String,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events read from the log.
    pub read: u64,
    /// Events published to the queue (and confirmed).
    pub published: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No broker: which node was tried and why it failed.
    #[error("{0}")]
    Broker(String),
    /// The target queue is not there.
    #[error("queue {0:?} does not exist: declare it (and bind nothing: replay publishes to it directly), then replay again")]
    NoSuchQueue(String),
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
async fn connect(settings: &Settings) -> Result<Broker, ReplayError> {
    // One attempt first: an operator learns at once, in words, why no node took it.
    let probe = crate::amqp::connect_once(&settings.amqp, "weibo-relay events")
        .await
        .map_err(|e| ReplayError::Broker(e.to_string()))?;
    let _ = probe.close(200, "probed".into()).await;
    let broker = Broker::start(&settings.amqp, Topology::default());
    if broker.wait_ready(Duration::from_secs(10)).await {
        Ok(broker)
    } else {
        broker.shutdown().await;
        Err(not_connected(settings))
    }
}

fn not_connected(settings: &Settings) -> ReplayError {
    ReplayError::Broker(format!(
        "cannot connect to the broker at {}",
        settings.amqp.redacted_url()
    ))
}

/// Re-publishes the matching events of the log to `options.to_queue`, each with its own
/// properties and headers, confirmed one by one; calls `progress` now and then on long
/// replays.
pub async fn replay(
    settings: &Settings,
    options: &ReplayOptions,
    mut progress: impl FnMut(ReplayReport),
) -> Result<ReplayReport, ReplayError> {
    let broker = connect(settings).await?;
    let result = replay_on(&broker, settings, options, &mut progress).await;
    broker.shutdown().await;
    result
}

async fn replay_on(
    broker: &Broker,
    settings: &Settings,
    options: &ReplayOptions,
    progress: &mut impl FnMut(ReplayReport),
) -> Result<ReplayReport, ReplayError> {
    let link = broker.current().ok_or_else(|| not_connected(settings))?;
    let log = event_log(&settings.amqp.events_queue);
    let log_error = |source: LogError| ReplayError::Log {
        log: log.clone(),
        source,
    };
    let target = crate::amqp::topology::queue_depth(link.connection(), &options.to_queue)
        .await
        .map_err(|e| log_error(e.into()))?;
    if target.is_none() {
        return Err(ReplayError::NoSuchQueue(options.to_queue.clone()));
    }

    let publisher = broker.publisher();
    let mut reader = LogReader::to_end(link.connection(), &publisher, &log, options.since)
        .await
        .map_err(log_error)?;
    let mut report = ReplayReport::default();
    let mut last_progress = Instant::now();
    let result = loop {
        let delivery = match reader.next().await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break Ok(report),
            Err(source) => break Err(log_error(source)),
        };
        let at = received_at(&delivery);
        if at.is_some_and(|at| at > options.until) {
            break Ok(report);
        }
        report.read += 1;
        if at.is_some_and(|at| at < options.since) || !matches(&delivery, options) {
            continue;
        }
        let published = publisher
            .publish(Outgoing {
                exchange: "",
                routing_key: &options.to_queue,
                body: &delivery.data,
                properties: as_logged(&delivery.properties),
            })
            .await;
        if let Err(source) = published {
            break Err(ReplayError::Publish {
                queue: options.to_queue.clone(),
                published_so_far: report.published,
                source,
            });
        }
        report.published += 1;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(report);
        }
    };
    reader.close().await;
    publisher.close().await;
    result
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

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

fn matches(delivery: &Delivery, options: &ReplayOptions) -> bool {
    if let Some(appid) = &options.appid {
        if header(delivery, APPID_HEADER).as_deref() != Some(appid.as_str()) {
            return false;
        }
    }
    if let Some(id) = &options.sub_order_id {
        let envelope: serde_json::Value =
            serde_json::from_slice(&delivery.data).unwrap_or_default();
        if envelope["sub_order_id"].as_str() != Some(id.as_str()) {
            return false;
        }
    }
    true
}

/// Prints each event published from now on, one line each, until `stop` or a closed output.
pub async fn tail(
    settings: &Settings,
    appid: Option<&str>,
    out: &mut impl Write,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64, ReplayError> {
    let broker = connect(settings).await?;
    let log = event_log(&settings.amqp.events_queue);
    let link = broker.current().ok_or_else(|| not_connected(settings))?;
    let log_error = |source: LogError| ReplayError::Log {
        log: log.clone(),
        source,
    };
    let mut reader = LogReader::open(link.connection(), &log, Offset::Next)
        .await
        .map_err(|e| log_error(e.into()))?;
    let mut shown = 0;
    let result = loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => break Ok(shown),
            delivery = reader.next() => match delivery {
                Ok(Some(delivery)) => delivery,
                Ok(None) => break Ok(shown),
                Err(source) => break Err(log_error(source)),
            },
        };
        if appid.is_some_and(|a| header(&delivery, APPID_HEADER).as_deref() != Some(a)) {
            continue;
        }
        if writeln!(out, "{}", line(&delivery)).is_err() {
            break Ok(shown);
        }
        shown += 1;
    };
    reader.close().await;
    broker.shutdown().await;
    result
}

/// One event for an operator's eyes: no personal data, only what identifies it.
fn line(delivery: &Delivery) -> String {
    let envelope: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
    let at = received_at(delivery).map_or_else(
        || "-".to_owned(),
        |at| humantime::format_rfc3339_seconds(at).to_string(),
    );
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => crate::telemetry::shown(s),
        serde_json::Value::Null => "null".to_owned(),
        other => other.to_string(),
    };
    format!(
        "{at} {} appid={} sub_order_id={} state_code={} source={} event_id={}",
        delivery.routing_key,
        field(&envelope["appid"]),
        field(&envelope["sub_order_id"]),
        field(&envelope["state_code"]),
        header(delivery, SOURCE_HEADER).unwrap_or_else(|| "-".into()),
        field(&envelope["event_id"]),
    )
}
