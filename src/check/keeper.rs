//! Who leads the keeper queue: a relay, which says so each second with a sealed heartbeat on
//! the tokens exchange, or a consumer that says nothing (a stranger holding the queue's
//! single-active-consumer slot, which stops every token refresh and call permit).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;

use super::{line, Line, Status};
use crate::amqp::Names;
use crate::keeper::election::STAMP_WINDOW;
use crate::keeper::stamp::{Kind, Verifier, MAX_MESSAGE_BYTES};
use crate::keeper::wire::{Broadcast, HEARTBEAT_KEY};
use crate::keys::Keyring;
use crate::settings::Settings;

/// How long to listen: a leader sends a heartbeat each second.
const LISTEN: Duration = Duration::from_secs(3);

/// What was heard on the tokens exchange while listening.
enum Heard {
    /// A heartbeat that verifies, after this long.
    Leader(Duration),
    /// None that verifies; this many that did not.
    Nothing(usize),
}

/// The keeper queue's consumers, and whether one of them is a relay that leads.
pub(super) async fn leader(settings: &Settings, names: &Names, connection: &Connection) -> Line {
    let what = format!("keeper queue {}", names.keeper());
    let consumers = match crate::amqp::topology::queue_consumers(connection, names.keeper()).await {
        Ok(Some(n)) => n,
        Ok(None) => return line(Status::Ok, what, "absent; the first worker declares it"),
        Err(e) => return line(Status::Fail, what, format!("cannot look at it: {e}")),
    };
    if consumers == 0 {
        return line(
            Status::Ok,
            what,
            "no consumer: no worker runs now (the first one to start leads)",
        );
    }
    match listen(settings, connection, names).await {
        Ok(Heard::Leader(after)) => line(
            Status::Ok,
            what,
            format!(
                "{consumers} consumer(s); a relay leads (its sealed heartbeat heard in {} ms)",
                after.as_millis()
            ),
        ),
        Ok(Heard::Nothing(forged)) => line(
            Status::Fail,
            what,
            format!(
                "{consumers} consumer(s), none announces itself as a relay leader (no sealed \\
                 heartbeat on {} within {} s{}): a consumer that is not a weibo-relay of this \\
                 configuration holds the queue's single-active-consumer slot, so no token is \\
                 refreshed and no call permit issued. `rabbitmqctl list_consumers` names its \\
                 channel; close that connection, and grant read on this queue to the relay's \\
                 user only",
                names.tokens(),
                LISTEN.as_secs(),
                if forged > 0 {
                    format!("; {forged} that did not verify with this configuration's keys")
                } else {
                    String::new()
                }
            ),
        ),
        Err(e) => line(
            Status::Fail,
            what,
            format!("cannot listen on {}: {e}", names.tokens()),
        ),
    }
}

/// Listens on the tokens exchange through a queue of its own for up to [`LISTEN`].
async fn listen(
    settings: &Settings,
    connection: &Connection,
    names: &Names,
) -> Result<Heard, lapin::Error> {
    let verifier = Verifier::new(Keyring::derive(&settings.merchants), names.tokens());
    let channel = connection.create_channel().await?;
    let queue = names.heartbeat_listener(&uuid::Uuid::new_v4().simple().to_string());
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
            names.tokens().into(),
            HEARTBEAT_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut heartbeats = channel
        .basic_consume(
            queue.as_str().into(),
            "weibo-relay-check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let mut forged = 0;
    let heard = loop {
        let left = LISTEN.saturating_sub(started.elapsed());
        let delivery = match tokio::time::timeout(left, heartbeats.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) | Err(_) => break Heard::Nothing(forged),
        };
        let stamp = (delivery.data.len() <= MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Broadcast>(&delivery.data).ok())
            .flatten();
        let genuine = stamp.is_some_and(|Broadcast::Leader(stamp)| {
            verifier
                .check(
                    Kind::Leader,
                    &stamp,
                    STAMP_WINDOW,
                    crate::clock::unix_millis(),
                )
                .is_ok()
        });
        if genuine {
            break Heard::Leader(started.elapsed());
        }
        forged += 1;
    };
    let _ = channel.close(200, "checked".into()).await;
    Ok(heard)
}
