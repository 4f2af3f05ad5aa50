//! Publishing with publisher confirms: a message counts as stored only on a plain ack.

use std::time::Instant;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};

use super::Broker;

/// One message to publish, mandatory, on the confirm channel.
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
    Timeout(std::time::Duration),
}

impl Broker {
    /// Publishes (mandatory: an unroutable message is an error) and waits for the broker's
    /// confirm; returns the time the confirm took.
    pub async fn publish(&self, msg: Outgoing<'_>) -> Result<std::time::Duration, PublishError> {
        self.publish_with(msg, true).await
    }

    /// Like [`publish`](Self::publish), but a message no queue is bound for is not an error.
    pub async fn publish_optional(
        &self,
        msg: Outgoing<'_>,
    ) -> Result<std::time::Duration, PublishError> {
        self.publish_with(msg, false).await
    }

    async fn publish_with(
        &self,
        msg: Outgoing<'_>,
        mandatory: bool,
    ) -> Result<std::time::Duration, PublishError> {
        let link = self.current().ok_or(PublishError::NotConnected)?;
        let started = Instant::now();
        let confirmed = async {
            let options = BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            };
            let pending = link
                .publisher
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
        };
        let result = tokio::time::timeout(self.confirm_timeout, confirmed)
            .await
            .unwrap_or(Err(PublishError::Timeout(self.confirm_timeout)));
        if let Err(PublishError::Publish(_) | PublishError::Confirm(_)) = &result {
            link.report_broken();
        }
        result.map(|()| started.elapsed())
    }
}
