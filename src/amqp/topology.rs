//! Exchanges, queues and bindings, declared idempotently on every (re)connection.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::config::AmqpSettings;

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

/// `<events_queue>.log`, the stream every order event is kept in.
pub fn event_log(events_queue: &str) -> String {
    format!("{events_queue}.log")
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
    /// The receiver's part: the events topic exchange and the event log bound to `order.#`,
    /// which keeps every order event routable (they are published mandatory). No queue named
    /// `events_queue` itself: nothing in the relay read it, and unread it filled the broker.
    pub fn events(settings: &AmqpSettings, log_max_age: &str) -> Self {
        let log = event_log(&settings.events_queue);
        Self::default()
            .exchange(&settings.events_exchange)
            .queue(QueueSpec::stream(&log, log_max_age))
            .bind(&log, &settings.events_exchange, "order.#")
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

    /// Joins two roles' topologies.
    pub fn merge(mut self, other: Topology) -> Self {
        for e in other.exchanges {
            self = self.exchange(&e);
        }
        for q in other.queues {
            self = self.queue(q);
        }
        self.bindings.extend(other.bindings);
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

    /// Deletes every queue and exchange of this topology (demo and test clean-up); goes on
    /// past a failure so one missing piece does not leave the rest behind, and returns the
    /// first error.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut first_error = None;
        for q in &self.queues {
            let deleted = channel
                .queue_delete(q.name.as_str().into(), QueueDeleteOptions::default())
                .await;
            first_error = first_error.or(deleted.err());
        }
        for name in &self.exchanges {
            let deleted = channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            first_error = first_error.or(deleted.err());
        }
        first_error.map_or(Ok(()), Err)
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

/// What `weibo-relay check` finds for one exchange or queue of a topology.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// It exists with the arguments the relay declares.
    Matches,
    /// It does not exist yet: the relay declares it at start.
    Absent,
    /// It exists with other arguments the relay accepts (the event log's retention).
    Kept(String),
    /// It exists with other arguments: the relay's declaration would fail, and it would not
    /// start.
    Differs(String),
}

impl Topology {
    /// Compares every exchange and queue with what exists, changing nothing: a passive
    /// declaration tells whether it exists, and redeclaring an existing one with the same
    /// arguments is a no-op that the broker refuses (PRECONDITION_FAILED) when they differ.
    pub async fn verify(
        &self,
        connection: &Connection,
    ) -> Result<Vec<(String, Found)>, lapin::Error> {
        let mut found = Vec::new();
        for name in &self.exchanges {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            let active = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            let mut outcome = Found::Matches;
            for options in [passive, active] {
                // A refused declaration closes its channel: one channel per attempt.
                let channel = connection.create_channel().await?;
                let declared = channel
                    .exchange_declare(
                        name.as_str().into(),
                        ExchangeKind::Topic,
                        options,
                        FieldTable::default(),
                    )
                    .await;
                match declared {
                    Ok(()) => {}
                    Err(e) if options.passive && is_not_found(&e) => outcome = Found::Absent,
                    Err(e) if is_precondition_failed(&e) => {
                        outcome = Found::Differs(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
                if channel.status().connected() {
                    let _ = channel.close(200, "checked".into()).await;
                }
                if outcome != Found::Matches {
                    break;
                }
            }
            found.push((format!("exchange {name}"), outcome));
        }
        for q in &self.queues {
            let mut outcome = Found::Matches;
            for passive in [true, false] {
                let channel = connection.create_channel().await?;
                let options = QueueDeclareOptions {
                    passive,
                    durable: true,
                    ..QueueDeclareOptions::default()
                };
                let arguments = if passive {
                    FieldTable::default()
                } else {
                    q.arguments.clone()
                };
                match channel
                    .queue_declare(q.name.as_str().into(), options, arguments)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if passive && is_not_found(&e) => outcome = Found::Absent,
                    Err(e) if is_precondition_failed(&e) && q.lenient => {
                        outcome = Found::Kept(e.to_string());
                    }
                    Err(e) if is_precondition_failed(&e) => outcome = Found::Differs(e.to_string()),
                    Err(e) => return Err(e),
                }
                if channel.status().connected() {
                    let _ = channel.close(200, "checked".into()).await;
                }
                if outcome != Found::Matches {
                    break;
                }
            }
            found.push((format!("queue {}", q.name), outcome));
        }
        Ok(found)
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

fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
}
