//! The sandbox's push sender: every order state change becomes a signed `type=2` push to
//! the merchant's URL, redelivered on the platform's schedule until it gets a 200.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SandboxHandle;
use weibo_relay::signature;

/// The platform drops a delivery that got no answer within this time.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// Deliveries in flight at once: a platform works through its queue of pushes with a bounded
/// number of connections; it neither opens one per order nor forgets the rest.
const IN_FLIGHT: usize = 32;

/// Redelivery delays after a failed delivery (platform spec section 5), then it gives up.
#[derive(Debug, Clone)]
pub struct PushSchedule {
    delays: Vec<Duration>,
}

impl PushSchedule {
    /// The spec's 1 min, 5 min, 15 min, multiplied by `time_scale` (1.0 is real time).
    pub fn scaled(time_scale: f64) -> Self {
        let scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            1.0
        };
        Self {
            delays: [60u64, 300, 900]
                .iter()
                // A scale too large for a Duration: the platform never redelivers in practice.
                .map(|s| {
                    weibo_relay::clock::scaled(Duration::from_secs(*s), scale)
                        .unwrap_or(Duration::MAX)
                })
                .collect(),
        }
    }
}

/// What the sender did, for reports and tests.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Events turned into pushes.
    pub events: AtomicU64,
    /// HTTP deliveries attempted (first deliveries and redeliveries).
    pub deliveries: AtomicU64,
    /// Deliveries answered 200.
    pub accepted: AtomicU64,
    /// Deliveries answered otherwise, or not in time.
    pub refused: AtomicU64,
    /// Events given up after the last redelivery.
    pub gave_up: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    /// The longest time from an order change to its push's 200, in milliseconds.
    slowest_ms: AtomicU64,
}

impl PushStats {
    /// The latency of every accepted delivery so far.
    pub fn latencies(&self) -> Vec<Duration> {
        self.latencies.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The longest time from an order change to the 200 of its push so far: how late a
    /// push can come, which reconciliation's `settle_secs` must exceed.
    pub fn slowest(&self) -> Duration {
        Duration::from_millis(Self::get(&self.slowest_ms))
    }

    /// Events not yet accepted nor given up.
    pub fn pending(&self) -> u64 {
        Self::get(&self.events)
            .saturating_sub(Self::get(&self.accepted))
            .saturating_sub(Self::get(&self.gave_up))
    }
}

/// A running push sender.
pub struct PushSender {
    stats: Arc<PushStats>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PushSender {
    /// Pushes every order change of `sandbox` from now on to `target` (the relay's push URL).
    pub fn start(sandbox: &Arc<SandboxHandle>, target: String, schedule: PushSchedule) -> Self {
        let stats = Arc::new(PushStats::default());
        let stop = CancellationToken::new();
        let mut events = sandbox.subscribe_orders();
        let http = reqwest::Client::builder()
            .timeout(ANSWER_DEADLINE)
            .build()
            .unwrap_or_default();
        let (sandbox, task_stats, task_stop) = (sandbox.clone(), stats.clone(), stop.clone());
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = task_stop.cancelled() => return,
                    event = events.recv() => event,
                };
                let Some(event) = event else { return };
                let Some(order) = sandbox.order(&event.appid, &event.sub_order_id) else {
                    continue;
                };
                let Some(merchant) = sandbox.merchants().get(event.appid.as_str()) else {
                    continue;
                };
                task_stats.events.fetch_add(1, Ordering::Relaxed);
                let delivery = Delivery {
                    changed_at: Instant::now(),
                    http: http.clone(),
                    target: target.clone(),
                    appid: event.appid.clone(),
                    uid: order.uid.clone(),
                    sign_key: merchant.sign_key().expose_secret().to_owned(),
                    data: order.content(event.state_code).to_string(),
                    stats: task_stats.clone(),
                    schedule: schedule.clone(),
                    stop: task_stop.clone(),
                    in_flight: in_flight.clone(),
                    sandbox: sandbox.clone(),
                };
                tokio::spawn(delivery.run());
            }
        });
        Self { stats, stop, task }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Arc<PushStats> {
        &self.stats
    }

    /// Stops sending (pending redeliveries are dropped).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Delivery {
    changed_at: Instant,
    http: reqwest::Client,
    target: String,
    appid: String,
    /// A provider's order: the merchant's uid, signed into the push.
    uid: Option<String>,
    sign_key: String,
    data: String,
    stats: Arc<PushStats>,
    schedule: PushSchedule,
    stop: CancellationToken,
    in_flight: Arc<Semaphore>,
    sandbox: Arc<SandboxHandle>,
}

impl Delivery {
    async fn run(self) {
        let waits = std::iter::once(Duration::ZERO).chain(self.schedule.delays.clone());
        for wait in waits {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            // Waiting for a connection is not waiting for the answer: the latency counts from
            // the moment this delivery is sent.
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return,
                permit = self.in_flight.acquire() => permit,
            };
            let Ok(_permit) = permit else { return };
            if self.sandbox.in_outage() {
                // The merchant's URL has been failing for longer than the platform retries:
                // this change is never delivered (reconciliation has to find it).
                self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            if self.deliver_once().await {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let late = u64::try_from(self.changed_at.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.stats.slowest_ms.fetch_max(late, Ordering::Relaxed);
                if let Ok(mut l) = self.stats.latencies.lock() {
                    l.push(started.elapsed());
                }
                return;
            }
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(appid = %self.appid, "push given up after the last redelivery");
    }

    /// One delivery with a fresh timestamp, nonce and sign; true on a 200.
    async fn deliver_once(&self) -> bool {
        let timestamp = weibo_relay::clock::unix_secs().to_string();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let mut fields = vec![
            ("appid", self.appid.as_str()),
            ("type", "2"),
            ("data", self.data.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
            ("sign_type", "md5"),
        ];
        if let Some(uid) = &self.uid {
            fields.push(("uid", uid.as_str()));
        }
        let sign = signature::sign(fields.iter().copied(), &self.sign_key);
        fields.push(("sign", sign.as_str()));
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let answer = self
            .http
            .post(&self.target)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
            .await;
        matches!(answer, Ok(r) if r.status().is_success())
    }
}
