//! `weibo-relay bench`: load generators for the receiver, the broker alone, the worker and the
//! platform gateway,
//! each ending with one [`Report`]. Every run is bounded in count and in time.

mod broker;
mod gateway;
mod push;
mod report;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;
use weibo_relay::settings::AmqpUrl;

pub use broker::{run as broker, BrokerOptions};
pub use gateway::{run as gateway, GatewayOptions};
pub use push::{run as push, signed_push, PushOptions};
pub use report::{Latency, QueueCheck, RateCheck, Report, Samples};
pub use worker::{run as worker, WorkerOptions};

/// Why a bench could not run (a run that got refusals still succeeds and reports them).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The broker could not be reached or refused a declaration.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// An HTTP client could not be built or the target not reached.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The worker bench could not set up the sandbox or the relay.
    #[error("setup: {0}")]
    Setup(String),
}

/// How much load: requests in flight, how many in all, and the time bound of the run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests in all.
    pub events: u64,
    /// No request starts after this; the run then ends once those in flight are answered.
    pub max_time: Duration,
}

impl Load {
    /// Refuses a load that would send nothing or run unbounded.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(BenchError::Invalid(
                "--concurrency must be 1 to 4096".into(),
            ));
        }
        if self.events == 0 {
            return Err(BenchError::Invalid("--events must be at least 1".into()));
        }
        if self.max_time.is_zero() {
            return Err(BenchError::Invalid("--max-secs must be at least 1".into()));
        }
        Ok(())
    }
}

/// Runs `one(i)` for i in 0..events with `concurrency` tasks pulling from one counter, each
/// call bounded by `per_request`; returns every answer and the wall time.
async fn drive<F, Fut>(load: Load, per_request: Duration, one: F) -> (Samples, Duration)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started.later(load.max_time);
    let tasks: Vec<_> = (0..load.concurrency)
        .map(|_| {
            let (next, one) = (next.clone(), one.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= load.events {
                        break;
                    }
                    let sent = Instant::now();
                    let answer = tokio::time::timeout(per_request, one(i))
                        .await
                        .unwrap_or_else(|_| "timeout".to_owned());
                    samples.record(sent.elapsed(), answer);
                }
                samples
            })
        })
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.merge(samples);
        }
    }
    (all, started.elapsed())
}

/// What an HTTP answer counts as: its status, `timeout` or `error`. The body is read whole,
/// so the connection goes back to the pool.
async fn answer_label(answer: reqwest::Result<reqwest::Response>) -> String {
    match answer {
        Ok(response) => {
            let status = response.status().as_u16().to_string();
            let _ = response.bytes().await;
            status
        }
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "error".to_owned(),
    }
}

/// Messages in `queue` now, by passive declaration (exact for quorum queues once confirmed).
pub async fn queue_depth(amqp_url: &AmqpUrl, queue: &str) -> Result<u64, BenchError> {
    let conn = crate::stage::connect_url(amqp_url, "weibo-relay bench")
        .await
        .map_err(BenchError::Setup)?;
    let depth = weibo_relay::amqp::topology::queue_depth(&conn, queue).await;
    let _ = conn.close(200, "bench done".into()).await;
    depth?
        .map(u64::from)
        .ok_or_else(|| BenchError::Setup(format!("queue {queue} does not exist")))
}

/// Declares `queue` bound to every order event of `exchange` when it does not exist (the relay
/// declares no such queue), and returns what deletes it again; `None` for a queue that was
/// there already (the baseline receiver's own, say).
pub async fn tap_if_absent(
    amqp_url: &AmqpUrl,
    queue: &str,
    exchange: &str,
) -> Result<Option<crate::stage::Teardown>, BenchError> {
    let conn = crate::stage::connect_url(amqp_url, "weibo-relay bench")
        .await
        .map_err(BenchError::Setup)?;
    let result = async {
        if weibo_relay::amqp::topology::queue_depth(&conn, queue)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let tap = weibo_relay::amqp::Topology::default()
            .exchange(exchange)
            .queue(weibo_relay::amqp::QueueSpec::quorum(queue))
            .bind(queue, exchange, "order.#");
        tap.declare(&conn).await?;
        let mut amqp =
            weibo_relay::settings::Settings::load(None, std::iter::empty::<(String, String)>())
                .map_err(|e| BenchError::Setup(e.to_string()))?
                .amqp;
        amqp.url = amqp_url.clone();
        let only_the_queue = weibo_relay::amqp::Topology::default()
            .queue(weibo_relay::amqp::QueueSpec::quorum(queue));
        Ok(Some(crate::stage::Teardown::of(only_the_queue, amqp)))
    }
    .await;
    let _ = conn.close(200, "bench tap".into()).await;
    result
}

/// A short id for names unique to one run.
fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drive_sends_each_index_once_and_stops_at_the_count() {
        let load = Load {
            concurrency: 3,
            events: 10,
            max_time: Duration::from_secs(5),
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let (samples, _) = drive(load, Duration::from_secs(1), move |i| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(i);
                if i % 5 == 0 { "503" } else { "200" }.to_owned()
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(samples.answers["200"], 8);
        assert_eq!(samples.answers["503"], 2);
    }

    #[test]
    fn loads_that_send_nothing_are_refused() {
        let ok = Load {
            concurrency: 1,
            events: 1,
            max_time: Duration::from_secs(1),
        };
        assert!(ok.validate().is_ok());
        assert!(Load {
            concurrency: 0,
            ..ok
        }
        .validate()
        .is_err());
        assert!(Load { events: 0, ..ok }.validate().is_err());
        assert!(Load {
            max_time: Duration::ZERO,
            ..ok
        }
        .validate()
        .is_err());
    }
}
