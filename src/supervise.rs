//! Long-running tasks that never vanish silently: a task that panics is logged, counted in
//! `weibo_relay_task_restarts_total{task}` and started again after a pause (1 s, doubling up
//! to a minute), until the process stops. Without this a panic in a spawned task is only a
//! line on stderr, and the process goes on looking healthy with the task gone.

use std::future::Future;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
}

impl Task {
    /// Every variant, in declaration order (strum): every series exists from the start.
    pub fn all() -> impl Iterator<Item = Self> {
        <Self as strum::IntoEnumIterator>::iter()
    }

    /// The metric label: the variant's name in snake_case.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Restarts by task.
#[derive(Clone)]
pub struct TaskMetrics {
    restarts: IntCounterVec,
}

impl TaskMetrics {
    /// Creates and registers the counter, with a series for each task.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "weibo_relay_task_restarts_total",
                "Background tasks restarted after a panic, by task",
            ),
            &["task"],
        )?;
        for task in Task::all() {
            restarts.with_label_values(&[task.as_str()]);
        }
        registry.register(Box::new(restarts.clone()))?;
        Ok(Self { restarts })
    }

    /// Restarts of `task` so far.
    pub fn restarts(&self, task: Task) -> u64 {
        self.restarts.with_label_values(&[task.as_str()]).get()
    }
}

/// Runs `start()` as a task, and again whenever it panics, until it returns or `stop` is
/// cancelled; each panic is logged (error level, with its message escaped and cut) and
/// counted. The returned handle ends when the task returns for good.
pub fn supervise<F, Fut>(
    task: Task,
    metrics: TaskMetrics,
    stop: CancellationToken,
    mut start: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            let started = tokio::time::Instant::now();
            let panic = match tokio::spawn(start()).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_and_restarted_until_it_returns() {
        let metrics = TaskMetrics::register(&Registry::new()).unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervise(
            Task::Sweeper,
            metrics.clone(),
            CancellationToken::new(),
            move || {
                let run = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(
                        run >= 2,
                        "run {run} panics, as a poisoned entry once made the sweeper"
                    );
                }
            },
        );
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.restarts(Task::Sweeper), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_process_does_not_restart_it() {
        let metrics = TaskMetrics::register(&Registry::new()).unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let handle = supervise(Task::Sweeper, metrics.clone(), stop, || async {
            panic!("always");
        });
        handle.await.unwrap();
        assert_eq!(metrics.restarts(Task::Sweeper), 1);
    }

    #[test]
    fn task_labels_are_the_documented_ones() {
        assert_eq!(
            Task::all().map(Task::as_str).collect::<Vec<_>>(),
            ["sweeper"]
        );
    }
}
