//! Every background task of a process, run one way: spawned through [`Tasks`], which tracks
//! it (a stopping process waits for it), stops it with one cancellation token, and supervises
//! it. A task that panics is logged, counted in `weibo_relay_task_restarts_total{task}` and
//! started again after a pause (1 s, doubling up to a minute), until the process stops.
//! Without this a panic in a spawned task is only a line on stderr, and the process goes on
//! looking healthy with the task gone.

use std::future::Future;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Label;

/// The first pause before a restart; it doubles with each panic in a row.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause before a restart.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A task that ran this long without panicking starts again from the first pause.
const STEADY: Duration = Duration::from_secs(300);

/// A supervised task: the `task` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Task {
    /// The reconciliation sweeper.
    Sweeper,
    /// The broker connection's supervisor (connects, reconnects, declares the topology).
    Broker,
    /// The token keeper's broker side: election, heartbeats, token announcements.
    Keeper,
    /// One merchant's token refresh, while the process leads.
    Refresh,
    /// The platform call permits issued while the process leads.
    PermitIssuer,
    /// The permits a worker takes from the permits queue.
    Permits,
    /// The fulfilment worker's consumer.
    Worker,
    /// The reader of the work and dead queues' depths.
    Backlog,
    /// Provider mode: refreshing merchants' tokens as they fall due.
    MerchantRefresh,
    /// Provider mode: publishing merchant events from the store's outbox.
    MerchantEvents,
    /// Provider mode: counting merchants by status, forgetting expired links.
    MerchantHousekeeping,
}

/// Restarts by task.
#[derive(Clone)]
pub struct TaskMetrics {
    restarts: IntCounterVec,
}

impl TaskMetrics {
    /// Creates and registers the counter, with a series for each task.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.restarts.clone()))?;
        Ok(metrics)
    }

    /// The counter, in no registry: for a short operator command or a test.
    pub fn unregistered() -> Self {
        let restarts = IntCounterVec::new(
            Opts::new(
                "weibo_relay_task_restarts_total",
                "Background tasks restarted after a panic, by task",
            ),
            &["task"],
        )
        .expect("static metric definition is valid");
        for task in Task::all() {
            restarts.with_label_values(&[task.as_str()]);
        }
        Self { restarts }
    }

    /// Restarts of `task` so far.
    pub fn restarts(&self, task: Task) -> u64 {
        self.restarts.with_label_values(&[task.as_str()]).get()
    }
}

/// A group of background tasks stopped by one token and waited for together. Cheap to
/// clone: clones share the group.
#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    metrics: TaskMetrics,
}

impl Tasks {
    /// A group of its own, counting restarts in `metrics`.
    pub fn new(metrics: TaskMetrics) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            metrics,
        }
    }

    /// A group that stops when this one stops, or on its own, and is waited for apart: what
    /// must stop before something of this group does (the roles before the broker link).
    pub fn child(&self) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: self.stop.child_token(),
            metrics: self.metrics.clone(),
        }
    }

    /// The token that stops this group (and its children).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Tells every task of the group to stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Runs `start(stop)` as a task of the group, and again whenever it panics, until it
    /// returns or the group stops; each panic is logged (error level, with its message
    /// escaped and cut) and counted. The handle ends when the task returns for good.
    pub fn spawn<F, Fut>(&self, task: Task, mut start: F) -> JoinHandle<()>
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, metrics) = (self.stop.clone(), self.metrics.clone());
        self.tracker.spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                let started = tokio::time::Instant::now();
                let panic = match tokio::spawn(start(stop.clone())).await {
                    Ok(()) => return,
                    Err(e) if e.is_panic() => e.into_panic(),
                    // Cancelled: the runtime is going down.
                    Err(_) => return,
                };
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                if started.elapsed() >= STEADY {
                    pause = FIRST_PAUSE;
                }
                metrics.restarts.with_label_values(&[task.as_str()]).inc();
                tracing::error!(
                    task = task.as_str(),
                    panic = %crate::telemetry::clip(&message, 200),
                    restart_in = ?pause,
                    "background task panicked; restarting it"
                );
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = pause.saturating_mul(2).min(LONGEST_PAUSE);
            }
        })
    }

    /// Stops the group and waits until every task of it has ended.
    pub async fn shutdown(&self) {
        self.stop();
        self.wait().await;
    }

    /// Waits until every task of the group has ended (after [`stop`](Self::stop), or once
    /// they all return by themselves); tasks spawned meanwhile are waited for too.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_and_restarted_until_it_returns() {
        let tasks = Tasks::new(TaskMetrics::unregistered());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = tasks.spawn(Task::Sweeper, move |_| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(
                    run >= 2,
                    "run {run} panics, as a poisoned entry once made the sweeper"
                );
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(tasks.metrics.restarts(Task::Sweeper), 2);
        assert_eq!(tasks.metrics.restarts(Task::Worker), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_process_does_not_restart_it() {
        let tasks = Tasks::new(TaskMetrics::unregistered());
        tasks.stop();
        let handle = tasks.spawn(Task::Sweeper, |_| async {
            panic!("always");
        });
        handle.await.unwrap();
        assert_eq!(tasks.metrics.restarts(Task::Sweeper), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_group_stops_with_its_parent_or_alone_and_is_waited_for_apart() {
        let parent = Tasks::new(TaskMetrics::unregistered());
        let child = parent.child();
        let stopped = Arc::new(AtomicU32::new(0));
        for group in [&parent, &child] {
            let stopped = stopped.clone();
            group.spawn(Task::Backlog, move |stop| {
                let stopped = stopped.clone();
                async move {
                    stop.cancelled().await;
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // The child alone: the parent's task runs on.
        child.shutdown().await;
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
        assert!(!parent.stop_token().is_cancelled());
        parent.shutdown().await;
        assert_eq!(stopped.load(Ordering::SeqCst), 2);
        // A parent stopped first stops its children too.
        let parent = Tasks::new(TaskMetrics::unregistered());
        let child = parent.child();
        parent.stop();
        assert!(child.stop_token().is_cancelled());
    }

    #[test]
    fn task_labels_are_the_documented_ones() {
        assert_eq!(
            Task::all().map(Task::as_str).collect::<Vec<_>>(),
            [
                "sweeper",
                "broker",
                "keeper",
                "refresh",
                "permit_issuer",
                "permits",
                "worker",
                "backlog",
                "merchant_refresh",
                "merchant_events",
                "merchant_housekeeping"
            ]
        );
    }
}
