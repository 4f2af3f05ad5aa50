//! How many commands wait: every worker process reads the depth of the work queue and of the
//! dead queue with a passive declaration every [`EVERY`] and exports it as
//! `weibo_relay_queue_messages{queue}`, so a backlog that grows is an alert of the relay's own
//! (deploy/monitoring), whatever RabbitMQ's metrics are scraped or not.

use std::time::Duration;

use std::sync::Arc;

use prometheus::{GaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::amqp::{Broker, Names};
use crate::metrics::Label;
use crate::supervise::{Task, Tasks};

/// How often the depths are read: cheap for the broker (one passive declaration per queue),
/// and well within a scrape interval.
pub const EVERY: Duration = Duration::from_secs(5);

/// The queues whose depth is exported: the `queue` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Watched {
    /// `<fulfilment_queue>`: commands waiting for a worker.
    Fulfilment,
    /// `<fulfilment_queue>.dead`: commands dead-lettered, waiting for an operator.
    Dead,
}

impl Watched {
    fn name(self, names: &Names) -> &str {
        match self {
            Self::Fulfilment => names.fulfilment(),
            Self::Dead => names.dead(),
        }
    }
}

/// Reads and exports the depths while the process runs.
pub struct Backlog {
    broker: Broker,
    names: Names,
    messages: GaugeVec,
}

impl Backlog {
    /// Registers `weibo_relay_queue_messages`; each series is NaN (unknown) until read.
    pub fn register(
        registry: &Registry,
        broker: Broker,
        names: &Names,
    ) -> prometheus::Result<Self> {
        let messages = GaugeVec::new(
            Opts::new(
                "weibo_relay_queue_messages",
                "Messages ready in the work queue (fulfilment) and the dead queue (dead), read by \
                 this process every 5 s; NaN while it cannot read them",
            ),
            &["queue"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        for queue in Watched::all() {
            messages.with_label_values(&[queue.as_str()]).set(f64::NAN);
        }
        Ok(Self {
            broker,
            names: names.clone(),
            messages,
        })
    }

    /// Reads the depths every [`EVERY`], as a task of `tasks`, until they stop.
    pub fn start(self, tasks: &Tasks) {
        let backlog = Arc::new(self);
        tasks.spawn(Task::Backlog, move |stop| backlog.clone().run(stop));
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.read_once().await,
            }
        }
    }

    #[tracing::instrument(name = "backlog", skip_all, level = "debug")]
    async fn read_once(&self) {
        for queue in Watched::all() {
            let depth = match self.broker.current() {
                Some(link) => {
                    let looked = tokio::time::timeout(
                        EVERY,
                        crate::amqp::topology::queue_depth(
                            link.connection(),
                            queue.name(&self.names),
                        ),
                    );
                    match looked.await {
                        Ok(Ok(Some(messages))) => f64::from(messages),
                        // The worker declares it again on its own: not known meanwhile.
                        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => f64::NAN,
                    }
                }
                // A stale number would be believed: say it is not known.
                None => f64::NAN,
            };
            self.messages
                .with_label_values(&[queue.as_str()])
                .set(depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_dashboards_and_alerts_match_on() {
        let labels: Vec<&str> = Watched::all().map(Watched::as_str).collect();
        assert_eq!(labels, ["fulfilment", "dead"]);
        let names = Names::new(&crate::settings::Settings::from_toml("").unwrap().amqp);
        assert_eq!(Watched::Dead.name(&names), "weibo.fulfilment.dead");
        assert_eq!(Watched::Fulfilment.name(&names), "weibo.fulfilment");
    }
}
