//! The topology as `check` finds it on the broker: every exchange and queue the relay would
//! declare, compared with what exists, without changing anything.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use crate::amqp::topology::{is_not_found, is_precondition_failed};
use crate::amqp::Topology;

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

/// Compares every exchange and queue of `topology` with what exists, changing nothing: a
/// passive declaration tells whether it exists, and redeclaring an existing one with the same
/// arguments is a no-op that the broker refuses (PRECONDITION_FAILED) when they differ.
pub(super) async fn verify(
    topology: &Topology,
    connection: &Connection,
) -> Result<Vec<(String, Found)>, lapin::Error> {
    let mut found = Vec::new();
    for name in topology.exchanges() {
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
    for q in topology.queues() {
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
