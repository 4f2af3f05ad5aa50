//! The agent's queues and what travels through them: its subscription to the tokens
//! exchange, its candidacy, token announcements out and in.

use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::super::stamp::MAX_MESSAGE_BYTES;
use super::super::wire::{self, TokenMessage, TokenPlain};
use super::Agent;
use crate::weibo::Token;

/// Keeper messages live this long in a queue, so none pile up while nobody consumes.
const MESSAGE_LIFE: &str = "3000";
/// Longest wait for the broker to take a message or an acknowledgement.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(1);

impl Agent {
    /// This process's own queue on the tokens exchange, gone with its connection.
    pub(super) async fn subscribe(&self, channel: &Channel) -> Result<Consumer, lapin::Error> {
        let queue = self.names.token_inbox(&self.process);
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.names.tokens().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .basic_consume(
                queue.as_str().into(),
                "weibo-relay-tokens".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
    }

    /// Joins the election: a consumer of the single-active-consumer queue.
    pub(super) async fn candidate(&self, channel: &Channel) -> Result<Consumer, lapin::Error> {
        channel
            .basic_consume(
                self.names.keeper().into(),
                format!("weibo-relay-keeper-{}", self.process)
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// A token announced by the leader: adopted when it opens and is newer.
    pub(super) fn on_announcement(&self, body: &[u8]) {
        let message = (body.len() <= MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<TokenMessage>(body).ok())
            .flatten();
        let Some(message) = message else {
            self.keeper.metrics().message_rejected();
            return;
        };
        let Some(plain) = self
            .keyring
            .merchant(&message.appid)
            .and_then(|keys| wire::open(keys, &message))
        else {
            self.keeper.metrics().message_rejected();
            return;
        };
        // Its age by the leader's clock, counted back from now on ours.
        let age =
            Duration::from_millis(crate::clock::unix_millis().saturating_sub(plain.obtained_at_ms));
        let obtained_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let token = Token::new(
            plain.access_token,
            plain.issued_at,
            Duration::from_secs(plain.expires_in),
            obtained_at,
        );
        if self.keeper.adopt(&message.appid, token, message.generation) {
            tracing::info!(appid = %message.appid, generation = message.generation, "access_token adopted from the token keeper");
        }
    }

    /// Announces `appid`'s current token, sealed.
    pub(super) async fn announce(&self, channel: &Channel, appid: &crate::ids::AppId) {
        let (Some((token, generation)), Some(keys)) =
            (self.keeper.current(appid), self.keyring.merchant(appid))
        else {
            return;
        };
        let age = Instant::now().saturating_duration_since(token.obtained_at());
        let plain = TokenPlain {
            access_token: token.secret().expose_secret().to_owned().into(),
            issued_at: token.issued_at(),
            expires_in: token.expires_in().as_secs(),
            obtained_at_ms: crate::clock::unix_millis()
                .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        };
        let message = wire::seal(keys, appid, generation, &plain);
        let body = serde_json::to_vec(&message).expect("a sealed token serializes");
        self.publish(channel, self.names.tokens(), appid.as_str(), &body)
            .await;
    }

    /// Fire and forget: a lost announcement or request is made good by the next `hello`.
    /// Nothing here outlives a few seconds: no request piles up while no process consumes.
    pub(super) async fn publish(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) {
        let published = channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_expiration(MESSAGE_LIFE.into()),
        );
        // Bounded: on a link that just died a publish can wait for good, and the agent must
        // go on to notice the loss and stand down.
        match tokio::time::timeout(SEND_TIMEOUT, published).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, exchange, "token keeper message not sent"),
            Err(_) => tracing::warn!(exchange, "token keeper message not sent within 1 s"),
        }
    }
}
