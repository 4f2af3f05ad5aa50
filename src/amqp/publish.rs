//! Publishing with publisher confirms: a message counts as stored only on a plain ack.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::{Broker, Link};

/// One message to publish on a confirm channel.
pub struct Outgoing<'a> {
    /// Exchange name.
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body bytes.
    pub body: &'a [u8],
    /// AMQP properties (persistence, ids, headers).
    pub properties: BasicProperties,
}

/// Every way a publish can fail to be stored; none of them is a success.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No broker connection right now.
    #[error("broker not connected")]
    NotConnected,
    /// No channel could be opened on the connection.
    #[error("cannot open a publishing channel: {0}")]
    Channel(#[source] lapin::Error),
    /// The publish could not be sent.
    #[error("publish failed: {0}")]
    Publish(#[source] lapin::Error),
    /// The channel failed while waiting for the confirm.
    #[error("confirm failed: {0}")]
    Confirm(#[source] lapin::Error),
    /// The broker refused to take responsibility for the message.
    #[error("broker nacked the message")]
    Nacked,
    /// The broker returned the mandatory message: nothing is bound for it.
    #[error("message unroutable: {code} {text}")]
    Returned {
        /// AMQP reply code, such as 312 NO_ROUTE.
        code: u16,
        /// The broker's text.
        text: String,
    },
    /// The channel is not in confirm mode (a bug, never expected).
    #[error("confirms were not enabled on the channel")]
    NotConfirmed,
    /// No confirm arrived within `amqp.confirm_timeout_ms`.
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
}

/// A channel of `connection` in confirm mode, for a tool that publishes on a connection of
/// its own (`dlq`, the sample consumer, the benches).
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes `msg` on `channel` (in confirm mode), mandatory, and waits for the broker's
/// confirm; Ok only on a plain ack.
pub async fn publish_confirmed(channel: &Channel, msg: Outgoing<'_>) -> Result<(), PublishError> {
    send(channel, msg, true).await
}

/// One publish and its confirm, read strictly: a return, a nack or a channel without
/// confirms is an error.
async fn send(channel: &Channel, msg: Outgoing<'_>, mandatory: bool) -> Result<(), PublishError> {
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    let pending = channel
        .basic_publish(
            msg.exchange.into(),
            msg.routing_key.into(),
            options,
            msg.body,
            msg.properties,
        )
        .await
        .map_err(PublishError::Publish)?;
    match pending.await.map_err(PublishError::Confirm)? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(PublishError::Returned {
                code: returned.reply_code,
                text: returned.reply_text.to_string(),
            })
        }
        Confirmation::Nack(None) => Err(PublishError::Nacked),
        Confirmation::NotRequested => Err(PublishError::NotConfirmed),
    }
}

/// The open channel and the link it belongs to. The channel is behind an Arc of its own: a
/// `lapin::Channel` is some fifteen Arcs, and each publish takes a handle to it out of the
/// slot (one atomic increment, not fifteen, per push).
type Slot = Option<(u64, Arc<Channel>)>;

/// A role's own confirm channel on the supervised connection. A channel the broker closes
/// (a publish to a deleted exchange, say) is replaced on the next publish; the connection,
/// and every other role's channel, is not touched. Cheap to clone: clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    confirm_timeout: Duration,
    channel: Arc<Mutex<Slot>>,
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    pub(super) fn new(broker: Broker, confirm_timeout: Duration) -> Self {
        Self {
            broker,
            confirm_timeout,
            channel: Arc::default(),
            opening: Arc::default(),
        }
    }

    /// Publishes (mandatory: an unroutable message is an error) and waits for the broker's
    /// confirm; returns the time the confirm took.
    pub async fn publish(&self, msg: Outgoing<'_>) -> Result<Duration, PublishError> {
        self.publish_with(msg, true).await
    }

    /// Like [`publish`](Self::publish), but a message no queue is bound for is not an error.
    pub async fn publish_optional(&self, msg: Outgoing<'_>) -> Result<Duration, PublishError> {
        self.publish_with(msg, false).await
    }

    async fn publish_with(
        &self,
        msg: Outgoing<'_>,
        mandatory: bool,
    ) -> Result<Duration, PublishError> {
        let link = self.broker.current().ok_or(PublishError::NotConnected)?;
        let channel = self.channel_on(&link).await?;
        let started = Instant::now();
        let confirmed = send(&channel, msg, mandatory);
        let result = tokio::time::timeout(self.confirm_timeout, confirmed)
            .await
            .unwrap_or(Err(PublishError::Timeout(self.confirm_timeout)));
        match &result {
            Err(PublishError::Publish(_) | PublishError::Confirm(_)) => {
                self.forget(&channel);
            }
            // RabbitMQ 3.10 keeps nacking on a channel that published to a quorum queue whose
            // leader was lost (measured: 60 s and counting, while a fresh channel is acked
            // 0.4 s after the new leader is elected). So a nack or a silent broker retires
            // the channel; it is closed once the other confirms on it had their time.
            Err(PublishError::Nacked | PublishError::Timeout(_)) if self.forget(&channel) => {
                let wait = self.confirm_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if channel.status().connected() {
                        let _ = channel.close(200, "retired after a nack".into()).await;
                    }
                });
            }
            _ => {}
        }
        result.map(|()| started.elapsed())
    }

    /// This publisher's open channel on `link`, opening one (in confirm mode) when there is
    /// none yet, it belongs to an older link, or the broker closed it.
    async fn channel_on(&self, link: &Link) -> Result<Arc<Channel>, PublishError> {
        if let Some(channel) = self.cached(link) {
            return Ok(channel);
        }
        // One opener at a time, so a burst of publishes after a reconnect opens one channel.
        let _opening = self.opening.lock().await;
        if let Some(channel) = self.cached(link) {
            return Ok(channel);
        }
        let channel = confirm_channel(link.connection())
            .await
            .map_err(PublishError::Channel)?;
        let channel = Arc::new(channel);
        *self.slot() = Some((link.id, channel.clone()));
        Ok(channel)
    }

    /// Closes the channel, if one is open; call when the role stops, before the connection
    /// closes (a channel dropped while the connection closes makes lapin log an error).
    pub async fn close(&self) {
        let channel = self.slot().take();
        if let Some((_, channel)) = channel {
            if channel.status().connected() {
                let _ = channel.close(200, "role stopped".into()).await;
            }
        }
    }

    fn cached(&self, link: &Link) -> Option<Arc<Channel>> {
        self.slot()
            .as_ref()
            .filter(|(id, channel)| *id == link.id && channel.status().connected())
            .map(|(_, channel)| channel.clone())
    }

    /// Drops `failed` from the slot; true when it was still the current channel.
    fn forget(&self, failed: &Channel) -> bool {
        let mut slot = self.slot();
        let current = slot.as_ref().is_some_and(|(_, c)| c.id() == failed.id());
        if current {
            *slot = None;
        }
        current
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // Only a channel handle is kept here: a poisoned lock still holds a usable value.
        self.channel.lock().unwrap_or_else(|p| p.into_inner())
    }
}
