//! Exchanges, queues and bindings, declared idempotently on every (re)connection.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ExchangeKind};

use super::Names;
use crate::permits::PERMIT_LIFE;
use crate::settings::Settings;
use crate::startup::Roles;
use crate::worker::retry::{RetryPolicy, DELAY_QUEUE_GRACE};

/// A durable queue with its arguments.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// Declaration arguments (`x-queue-type`, dead-lettering, TTL).
    pub arguments: FieldTable,
    /// An existing queue with other arguments is kept (with a warning) rather than failing
    /// the whole declaration: for settings RabbitMQ cannot change on a declared queue.
    pub lenient: bool,
}

impl QueueSpec {
    /// A replicated quorum queue: survives a node loss and tracks delivery counts.
    pub fn quorum(name: &str) -> Self {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        Self {
            name: name.to_owned(),
            arguments,
            lenient: false,
        }
    }

    /// A stream keeping what it is sent for `max_age` (`7D`, `24h`): an append-only log that
    /// consumers read from any point. Kept as it is if it exists with another retention.
    pub fn stream(name: &str, max_age: &str) -> Self {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("stream"));
        arguments.insert("x-max-age".into(), long_string(max_age));
        Self {
            name: name.to_owned(),
            arguments,
            lenient: true,
        }
    }

    /// A classic durable queue (used for delay queues, whose TTL must expire promptly).
    pub fn classic(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            arguments: FieldTable::default(),
            lenient: false,
        }
    }

    /// Adds one declaration argument.
    pub fn with_argument(mut self, key: &str, value: AMQPValue) -> Self {
        self.arguments.insert(key.into(), value);
        self
    }
}

/// A string AMQP value.
pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Everything a process declares.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    exchanges: Vec<String>,
    queues: Vec<QueueSpec>,
    bindings: Vec<(String, String, String)>,
}

impl Topology {
    /// Everything a process running `roles` declares, named by `names`. Every role: the
    /// events topic exchange and the event log bound to `order.#`, which keeps every order
    /// event routable (they are published mandatory); no queue named `events_queue` itself
    /// (nothing in the relay read it, and unread it filled the broker). The worker adds its
    /// work, dead and delay queues and the token keeper's queues.
    pub fn for_roles(names: &Names, settings: &Settings, roles: Roles) -> Self {
        let (exchange, log) = (names.events_exchange(), names.event_log());
        let topology = Self::default()
            .exchange(exchange)
            .queue(QueueSpec::stream(log, settings.event_log.max_age.as_str()))
            .bind(log, exchange, "order.#");
        if !roles.runs_worker() {
            return topology;
        }
        let mut topology = topology
            .queue(QueueSpec::quorum(names.fulfilment()))
            .queue(QueueSpec::quorum(names.dead()))
            // The token keeper's election: one active consumer at a time.
            .queue(
                QueueSpec::quorum(names.keeper())
                    .with_argument("x-single-active-consumer", AMQPValue::Boolean(true)),
            )
            // Its announcements, and the platform call permits, which expire in the queue
            // when nobody takes them within their life.
            .exchange(names.tokens())
            .queue(
                QueueSpec::quorum(names.permits())
                    .with_argument("x-message-ttl", AMQPValue::LongLongInt(millis(PERMIT_LIFE))),
            );
        let fulfilment = names.fulfilment();
        for delay in RetryPolicy::from_settings(&settings.weibo).delays() {
            // Quorum like the work queue, so a command waiting for its retry survives the loss
            // of a node; an expired message is dead-lettered at least once (never dropped)
            // straight back to the work queue through the default exchange. Declaring it
            // again is what keeps it from expiring while it is in use.
            topology = topology.queue(
                QueueSpec::quorum(&names.retry(delay))
                    .with_argument("x-message-ttl", AMQPValue::LongLongInt(millis(delay)))
                    .with_argument("x-dead-letter-exchange", long_string(""))
                    .with_argument("x-dead-letter-routing-key", long_string(fulfilment))
                    .with_argument("x-dead-letter-strategy", long_string("at-least-once"))
                    .with_argument("x-overflow", long_string("reject-publish"))
                    .with_argument(
                        "x-expires",
                        AMQPValue::LongLongInt(millis(delay.saturating_add(DELAY_QUEUE_GRACE))),
                    ),
            );
        }
        topology
    }

    /// Adds a durable topic exchange.
    pub fn exchange(mut self, name: &str) -> Self {
        if !self.exchanges.iter().any(|e| e == name) {
            self.exchanges.push(name.to_owned());
        }
        self
    }

    /// Adds a queue.
    pub fn queue(mut self, spec: QueueSpec) -> Self {
        if !self.queues.iter().any(|q| q.name == spec.name) {
            self.queues.push(spec);
        }
        self
    }

    /// Binds `queue` to `exchange` with `key`.
    pub fn bind(mut self, queue: &str, exchange: &str, key: &str) -> Self {
        self.bindings
            .push((queue.to_owned(), exchange.to_owned(), key.to_owned()));
        self
    }

    /// The durable topic exchanges.
    pub fn exchanges(&self) -> &[String] {
        &self.exchanges
    }

    /// The queues with their arguments.
    pub fn queues(&self) -> &[QueueSpec] {
        &self.queues
    }

    /// The bindings as (queue, exchange, routing key).
    pub fn bindings(&self) -> &[(String, String, String)] {
        &self.bindings
    }

    /// Declares everything on channels of `connection`; redeclaring with the same arguments is
    /// a no-op on the broker.
    pub async fn declare(&self, connection: &Connection) -> Result<(), lapin::Error> {
        let mut channel = connection.create_channel().await?;
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for name in &self.exchanges {
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await?;
        }
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for q in &self.queues {
            let declared = channel
                .queue_declare(q.name.as_str().into(), durable_queue, q.arguments.clone())
                .await;
            match declared {
                Ok(_) => {}
                Err(error) if q.lenient && is_precondition_failed(&error) => {
                    // The refusal closed the channel; the queue exists, as it was declared.
                    tracing::warn!(queue = %q.name, %error, "queue kept with the arguments it was declared with; change them with a policy");
                    channel = connection.create_channel().await?;
                }
                Err(error) => return Err(error),
            }
        }
        for (queue, exchange, key) in &self.bindings {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        // A failed declaration already closed the channel; this closes a good one.
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }
}

/// Messages in `queue` now, or `None` when there is no such queue. Asks on a channel of its
/// own: the broker closes the channel of a passive declaration that finds nothing.
pub async fn queue_depth(
    connection: &Connection,
    queue: &str,
) -> Result<Option<u32>, lapin::Error> {
    Ok(queue_stats(connection, queue).await?.map(|s| s.messages))
}

/// What a passive declaration tells of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery (not those delivered and unacknowledged).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Messages and consumers of `queue` now, or `None` when there is no such queue.
pub async fn queue_stats(
    connection: &Connection,
    queue: &str,
) -> Result<Option<QueueStats>, lapin::Error> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(declared) => {
            let _ = channel.close(200, "queue looked at".into()).await;
            Ok(Some(QueueStats {
                messages: declared.message_count(),
                consumers: declared.consumer_count(),
            }))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Warns when `queue`, the catch-all events queue earlier releases declared, is still on the
/// broker with nobody reading it: bound to every event, it fills until RabbitMQ's memory or
/// disk alarm blocks all publishing. Deleting it is the operator's call (`check` says how).
pub async fn warn_if_events_queue_left_over(connection: &Connection, queue: &str) {
    let looked = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        queue_stats(connection, queue),
    );
    if let Ok(Ok(Some(stats))) = looked.await {
        if stats.consumers == 0 {
            tracing::warn!(
                queue,
                messages = stats.messages,
                delete = %format!("rabbitmqctl delete_queue {queue}"),
                "a queue an earlier release declared is bound to every event and read by nobody: it fills until the broker blocks publishing; the event log keeps every event, so delete it"
            );
        }
    }
}

/// Consumers of `queue` now, or `None` when it does not exist.
pub async fn queue_consumers(
    connection: &Connection,
    queue: &str,
) -> Result<Option<u32>, lapin::Error> {
    Ok(queue_stats(connection, queue).await?.map(|s| s.consumers))
}

/// A duration as the whole milliseconds RabbitMQ's `x-message-ttl` and `x-expires` take.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argument<'a>(topology: &'a Topology, queue: &str, key: &str) -> Option<&'a AMQPValue> {
        let spec = topology.queues().iter().find(|q| q.name == queue)?;
        spec.arguments.inner().get(key)
    }

    #[test]
    fn each_role_declares_its_part_named_by_names() {
        let settings = Settings::from_toml("[weibo]\nmax_attempts = 3\n").unwrap();
        let names = Names::new(&settings.amqp);
        let receiver = Topology::for_roles(&names, &settings, Roles::Receiver);
        assert_eq!(receiver.exchanges(), ["weibo.events"]);
        let queues = |t: &Topology| {
            t.queues()
                .iter()
                .map(|q| q.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(queues(&receiver), ["weibo.orders.log"]);
        assert_eq!(
            receiver.bindings(),
            [(
                "weibo.orders.log".to_owned(),
                "weibo.events".to_owned(),
                "order.#".to_owned()
            )]
        );
        let worker = Topology::for_roles(&names, &settings, Roles::Worker);
        assert_eq!(
            Topology::for_roles(&names, &settings, Roles::Serve)
                .queues()
                .len(),
            worker.queues().len()
        );
        assert_eq!(
            worker.exchanges(),
            ["weibo.events", "weibo.fulfilment.tokens"]
        );
        assert_eq!(
            queues(&worker),
            [
                "weibo.orders.log",
                "weibo.fulfilment",
                "weibo.fulfilment.dead",
                "weibo.fulfilment.keeper",
                "weibo.fulfilment.permits",
                "weibo.fulfilment.retry.5000ms",
                "weibo.fulfilment.retry.10000ms",
            ]
        );
        // The permits' life is written once: the queue's TTL is the permits module's.
        assert_eq!(
            argument(&worker, "weibo.fulfilment.permits", "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(millis(PERMIT_LIFE)))
        );
        assert_eq!(millis(PERMIT_LIFE), 500);
        assert_eq!(
            argument(
                &worker,
                "weibo.fulfilment.keeper",
                "x-single-active-consumer"
            ),
            Some(&AMQPValue::Boolean(true))
        );
        assert_eq!(
            argument(
                &worker,
                "weibo.fulfilment.retry.10000ms",
                "x-dead-letter-routing-key"
            ),
            Some(&long_string("weibo.fulfilment"))
        );
    }
}
