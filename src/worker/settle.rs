//! Giving a command its next home, then acknowledging it: ack only after the broker
//! confirmed the new home, so a crash at any point loses nothing.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use secrecy::ExposeSecret;

use super::command::Command;
use super::decide::{Admitted, Next};
use super::headers::{self, ATTEMPTS, DEATH_REASON, LAST_CODE, SEALED_ATTEMPTS};
use super::outcome::{Outcome, OutcomeBody};
use super::Worker;
use crate::amqp::{Outgoing, PublishError};
use crate::trace::TraceContext;

/// Pause before a command whose next home was refused goes back to the queue.
const REQUEUE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl Worker {
    /// Publishes the next home of `delivery`, then acks it; on a broker failure the delivery
    /// is returned to the queue and will be processed again.
    #[tracing::instrument(name = "settle", skip_all)]
    pub(super) async fn settle(&self, delivery: &Delivery, next: Next<'_>, trace: &TraceContext) {
        let result = self.publish_next(delivery, &next, trace).await;
        let settled = match result {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            Err(error) => {
                tracing::warn!(%error, "next home not confirmed; command returned to the queue");
                if !matches!(error, PublishError::NotConnected) {
                    // A queue or exchange of ours may have been deleted under us: declare them
                    // again on a channel of our own. The connection, which the receiver shares,
                    // is never reset for one message.
                    if let Err(error) = self.broker.declare_topology().await {
                        tracing::warn!(%error, "topology not declared again");
                    }
                }
                // A broker that keeps refusing must not turn into a hot loop of platform calls.
                tokio::time::sleep(REQUEUE_PAUSE).await;
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                delivery.nack(requeue).await
            }
        };
        if let Err(error) = settled {
            // The channel is gone: the broker redelivers the command on the next connection.
            tracing::warn!(%error, "could not settle the delivery; it will be redelivered");
        }
    }

    async fn publish_next(
        &self,
        delivery: &Delivery,
        next: &Next<'_>,
        trace: &TraceContext,
    ) -> Result<(), PublishError> {
        match next {
            Next::Succeeded {
                command,
                attempts,
                code,
                data,
            } => {
                tracing::info!(attempts, code, "fulfilment succeeded");
                let body = OutcomeBody {
                    command,
                    attempts: *attempts,
                    code: Some(*code),
                    msg: "success",
                    data: data.as_ref(),
                };
                self.publish_outcome(Outcome::Succeeded, &body, trace).await
            }
            Next::Retry {
                admitted:
                    Admitted {
                        command: _,
                        merchant,
                    },
                attempts,
                code,
                reason,
            } => {
                // After an attempt its delay; a command that waited without one, the first.
                let step = (*attempts).max(1);
                let delay = self.policy.jittered_delay(step);
                tracing::info!(attempts, ?delay, %reason, "retrying later");
                // Sealed with the merchant's own key: a count nobody else could have written.
                let key = merchant.sign_key().expose_secret().as_bytes();
                let properties = republished(
                    delivery,
                    &[
                        (
                            SEALED_ATTEMPTS,
                            Some(headers::seal(*attempts, &delivery.data, key)),
                        ),
                        (ATTEMPTS, Some(headers::number(*attempts))),
                        (LAST_CODE, headers::last_code(*code)),
                    ],
                )
                .with_expiration(delay.as_millis().to_string().as_str().into());
                self.publisher
                    .publish(Outgoing {
                        exchange: "",
                        routing_key: &self.names.retry(self.policy.delay(step)),
                        body: &delivery.data,
                        properties,
                    })
                    .await?;
                self.metrics.retry();
                Ok(())
            }
            Next::Dead {
                command,
                attempts,
                code,
                reason,
                cause,
            } => {
                if let Some(suppressed) = self.dead_log.admit() {
                    tracing::warn!(attempts, code, %reason, suppressed, "dead-lettering command");
                }
                let properties = republished(
                    delivery,
                    &[
                        (ATTEMPTS, Some(headers::number(*attempts))),
                        (LAST_CODE, headers::last_code(*code)),
                        (DEATH_REASON, Some(headers::text(reason))),
                    ],
                );
                self.publisher
                    .publish(Outgoing {
                        exchange: "",
                        routing_key: self.names.dead(),
                        body: &delivery.data,
                        properties,
                    })
                    .await?;
                self.metrics.dead_letter(*cause);
                if let Some(command) = command {
                    let body = OutcomeBody {
                        command,
                        attempts: *attempts,
                        code: *code,
                        msg: reason,
                        data: None,
                    };
                    self.publish_outcome(Outcome::Failed, &body, trace).await?;
                }
                Ok(())
            }
        }
    }

    async fn publish_outcome(
        &self,
        outcome: Outcome,
        body: &OutcomeBody<'_>,
        trace: &TraceContext,
    ) -> Result<(), PublishError> {
        let routing_key = outcome.routing_key();
        let command: &Command = body.command;
        let body = serde_json::to_vec(body).expect("an outcome of strings and numbers serializes");
        let mut headers = FieldTable::default();
        trace.write(&mut headers);
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type(routing_key.into())
            .with_message_id(outcome.message_id(command).as_str().into())
            .with_headers(headers);
        // Not mandatory: outcomes are for whoever binds a queue; none bound is not a failure.
        self.publisher
            .publish_optional(Outgoing {
                exchange: self.names.events_exchange(),
                routing_key,
                body: &body,
                properties,
            })
            .await
            .map(|_| ())
    }
}

/// The delivery's properties for its next queue: persistent, headers carried and changed.
fn republished(
    delivery: &Delivery,
    changes: &[(&str, Option<lapin::types::AMQPValue>)],
) -> BasicProperties {
    let original = &delivery.properties;
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers::carried(original, changes));
    if let Some(ct) = original.content_type() {
        properties = properties.with_content_type(ct.clone());
    }
    if let Some(id) = original.message_id() {
        properties = properties.with_message_id(id.clone());
    }
    properties
}
