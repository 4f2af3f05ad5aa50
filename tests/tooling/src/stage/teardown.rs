//! Deleting everything a stage's relays may have declared, also when whoever ran the stage
//! panicked half-way: a test that fails must not leave its queues on the broker.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::Channel;

use weibo_relay::amqp::{Names, QueueSpec, Topology};
use weibo_relay::settings::{AmqpSettings, Settings};
use weibo_relay::startup::Roles;

/// Deletes a stage's exchanges and queues when run, or when dropped without being run.
pub struct Teardown {
    amqp: AmqpSettings,
    topology: Option<Topology>,
}

impl Teardown {
    /// Everything a relay with `settings` may declare, receiver and worker alike, deleted
    /// through the same broker settings.
    pub fn new(settings: &Settings) -> Self {
        Self::through(settings, settings.amqp.clone())
    }

    /// Like [`new`](Self::new), deleting through the broker connection `amqp` describes.
    pub fn through(settings: &Settings, amqp: AmqpSettings) -> Self {
        let names = Names::new(&settings.amqp);
        let topology = Topology::for_roles(&names, settings, Roles::Serve)
            .queue(QueueSpec::quorum(&names.tap()));
        Self {
            amqp,
            topology: Some(topology),
        }
    }

    /// Deletes `topology` (queues a test declared besides the stage's, say) through `amqp`.
    pub fn of(topology: Topology, amqp: AmqpSettings) -> Self {
        Self {
            amqp,
            topology: Some(topology),
        }
    }

    /// Deletes now; the error, if any, is the first deletion refused (the rest are tried).
    pub async fn run(mut self) -> anyhow::Result<()> {
        match self.topology.take() {
            Some(topology) => delete(&self.amqp, &topology).await,
            None => Ok(()),
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let Some(topology) = self.topology.take() else {
            return;
        };
        let amqp = self.amqp.clone();
        // Drop cannot await, and may run inside a runtime: a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if let Err(error) = runtime.block_on(delete(&amqp, &topology)) {
                tracing::warn!(%error, "stage queues not fully deleted");
            }
        });
        let _ = cleanup.join();
    }
}

async fn delete(amqp: &AmqpSettings, topology: &Topology) -> anyhow::Result<()> {
    let connection = weibo_relay::amqp::connect_once(amqp, "weibo-relay stage teardown").await?;
    let deleted = async {
        let channel = connection.create_channel().await?;
        let deleted = delete_on(&channel, topology).await;
        let _ = channel.close(200, "stage done".into()).await;
        Ok::<_, anyhow::Error>(deleted?)
    }
    .await;
    let _ = connection.close(200, "stage done".into()).await;
    deleted
}

/// Deletes every queue and exchange of `topology` on `channel`; goes on past a failure so
/// one missing piece does not leave the rest behind, and returns the first error.
pub async fn delete_on(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let mut first_error = None;
    for q in topology.queues() {
        let deleted = channel
            .queue_delete(q.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        first_error = first_error.or(deleted.err());
    }
    for name in topology.exchanges() {
        let deleted = channel
            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await;
        first_error = first_error.or(deleted.err());
    }
    first_error.map_or(Ok(()), Err)
}
