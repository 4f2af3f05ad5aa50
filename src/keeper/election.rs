//! The token keeper's broker side: which process of the deployment leads, and how the others
//! get its tokens.
//!
//! **Election.** Every `worker`/`serve` process consumes the quorum queue
//! `<fulfilment_queue>.keeper`, declared with `x-single-active-consumer`: RabbitMQ delivers to
//! exactly one of its consumers at a time and hands over to the next when that consumer's
//! channel or connection goes (closed, or silent past the heartbeat timeout). Every process
//! also publishes a stamped ping there each second, so the active consumer learns that it is
//! active from the first message it receives: from then on it leads. It stops leading at once
//! when its broker link goes, when its consumer ends, or when it has received nothing, not
//! even its own pings, for three seconds (then it may no longer be the active consumer).
//!
//! **A leader that is not ours.** The queue's active consumer may be anything allowed to read
//! it. So the leader says each second, with a stamped heartbeat on the tokens exchange, that a
//! relay leads; a connected candidate that hears none for a while reports a foreign leader
//! ([`super::leadership`]): log, metric, `/readyz`.
//!
//! **Tokens.** The leader announces each token it obtains, sealed (see [`super::wire`]),
//! on the topic exchange `<fulfilment_queue>.tokens`; every process reads it through an
//! exclusive queue of its own and adopts newer generations. A process that joins, or finds no
//! usable token, sends a stamped `hello` to the leader's queue, and the leader announces every
//! current token again, at most once a second however many hellos arrive. A process whose
//! call was refused for its token sends an authenticated refresh request for that token's
//! generation; the leader refreshes only if it is still current. Requests that are not
//! stamped (or sealed) by the deployment are counted and ignored.
//!
//! **Rate.** The leader also issues the deployment's platform call permits ([`crate::permits`]).

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicQosOptions};
use lapin::Channel;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::leadership::{Change, LeaderWatch};
use super::stamp::{Kind, NoDeploymentKey, Sequence, Stamper, Verifier, Window};
use super::wire::{Request, HEARTBEAT_KEY};
use super::{KeeperEvent, Leading, TokenKeeper};
use crate::amqp::{Broker, Link, Names};
use crate::keys::Keyring;
use crate::permits::PermitIssuer;
use crate::supervise::{Task, Tasks};

mod inbox;
mod tokens;

/// What the keeper asks of its broker side.
type Events = mpsc::UnboundedReceiver<KeeperEvent>;

/// How often every process pings the keeper queue, and the leader sends its heartbeat.
const PING_EVERY: Duration = Duration::from_secs(1);
/// A leader that receives nothing for this long stands down.
const SILENCE: Duration = Duration::from_secs(3);
/// A process asks the leader for its tokens at most this often.
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// The leader announces every token at most this often, however many hellos arrive.
const ANNOUNCE_ALL_EVERY: Duration = Duration::from_secs(1);
/// Keeper queue messages a process holds unacknowledged: what a flood can cost in memory.
const INBOX_PREFETCH: u16 = 64;
/// Deliveries acknowledged together (and at least each second): a flood costs half the frames.
const ACK_EVERY: u16 = INBOX_PREFETCH / 2;
/// Senders whose last counter a process remembers (processes of the deployment).
const SENDERS: usize = 1024;
/// How far a request's or heartbeat's date may be from this process's clock: a copy is
/// refused after this long, and the processes' clocks must agree within it.
pub const STAMP_WINDOW: Window = Window {
    max_age: Duration::from_secs(10),
    max_ahead: Duration::from_secs(10),
};

/// Runs a process's part in the election and in passing tokens around.
pub struct Agent {
    broker: Broker,
    keeper: TokenKeeper,
    keyring: Keyring,
    names: Names,
    permit_rate: u32,
    process: String,
    requests: Stamper,
    heartbeats: Stamper,
    // One sequence across every stint as leader: a worker takes no counter twice.
    permit_stamps: Arc<Stamper>,
    request_check: Verifier,
    heartbeat_check: Verifier,
    /// Where the permit issuer runs while this process leads.
    tasks: Tasks,
}

/// What one stint on one broker link remembers.
struct Session {
    requests_seen: Sequence,
    heartbeats_seen: Sequence,
    watch: LeaderWatch,
    last_heard: StdInstant,
    last_hello: StdInstant,
    announced_all: Option<StdInstant>,
    announce_pending: bool,
    // The last delivery not yet acknowledged, and how many are.
    unacked: Option<(lapin::message::Delivery, u16)>,
}

impl Agent {
    /// The agent for `keeper`'s process, issuing `permit_rate` platform calls per second while
    /// it leads.
    pub fn new(
        broker: Broker,
        keeper: TokenKeeper,
        names: Names,
        permit_rate: u32,
        keyring: Keyring,
        tasks: &Tasks,
    ) -> Result<Self, NoDeploymentKey> {
        let process = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            requests: Stamper::new(&keyring, &process, names.keeper())?,
            heartbeats: Stamper::new(&keyring, &process, names.tokens())?,
            permit_stamps: Arc::new(Stamper::new(&keyring, &process, names.permits())?),
            request_check: Verifier::new(keyring.clone(), names.keeper()),
            heartbeat_check: Verifier::new(keyring.clone(), names.tokens()),
            broker,
            keeper,
            keyring,
            names,
            permit_rate,
            process,
            tasks: tasks.clone(),
        })
    }

    /// Runs as a task of `tasks` until they stop, on every broker link in turn.
    pub fn start(self, events: Events, tasks: &Tasks) {
        let agent = Arc::new(self);
        // Kept across a restart after a panic: what the keeper has still to say.
        let events = Arc::new(tokio::sync::Mutex::new(events));
        tasks.spawn(Task::Keeper, move |stop| {
            let (agent, events) = (agent.clone(), events.clone());
            async move {
                let each = |link: Link| {
                    let (agent, events, stop) = (agent.clone(), events.clone(), stop.clone());
                    async move {
                        let mut events = events.lock().await;
                        if let Err(error) = agent.serve(&link, &mut events, &stop).await {
                            tracing::warn!(%error, "token keeper's broker side failed; starting again");
                        }
                    }
                };
                agent.broker.on_each_link(&stop, each).await;
            }
        });
    }

    async fn serve(
        &self,
        link: &Link,
        events: &mut Events,
        stop: &CancellationToken,
    ) -> Result<(), lapin::Error> {
        let channel = link.connection().create_channel().await?;
        let mut leading = None;
        let served = self
            .serve_on(link, &channel, &mut leading, events, stop)
            .await;
        // Not a connected candidate any more: whoever leads is no longer this process's call.
        self.keeper.set_foreign_leader(None);
        if let Some(leading) = leading.take() {
            leading.stand_down().await;
            if stop.is_cancelled() {
                tracing::info!("token keeper stopped with the process");
            } else {
                tracing::warn!("no longer the token keeper");
            }
        }
        // The channel closes before the connection may: lapin logs an error for a channel
        // dropped while its connection closes.
        let closing = channel.close(200, "token keeper stopping".into());
        let _ = tokio::time::timeout(tokens::SEND_TIMEOUT, closing).await;
        served
    }

    async fn serve_on(
        &self,
        link: &Link,
        channel: &Channel,
        leading: &mut Option<Leading>,
        events: &mut Events,
        stop: &CancellationToken,
    ) -> Result<(), lapin::Error> {
        channel
            .basic_qos(INBOX_PREFETCH, BasicQosOptions::default())
            .await?;
        let mut announced = self.subscribe(channel).await?;
        let mut inbox = self
            .candidate(channel)
            .await?
            .ready_chunks(usize::from(ACK_EVERY));
        self.send(channel, &Request::Hello(self.requests.stamp(Kind::Hello)))
            .await;
        let mut s = Session {
            requests_seen: Sequence::new(SENDERS),
            heartbeats_seen: Sequence::new(SENDERS),
            watch: LeaderWatch::new(StdInstant::now()),
            last_heard: StdInstant::now(),
            last_hello: StdInstant::now(),
            announced_all: None,
            announce_pending: false,
            unacked: None,
        };
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut links = self.broker.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = lost(&mut links, link) => return Ok(()),
                _ = ping.tick() => self.tick(channel, leading, &mut s).await,
                // What has arrived is taken together, up to one batch of acknowledgements: a
                // flood costs one wake-up per batch.
                batch = inbox.next() => {
                    let Some(batch) = batch else { return Ok(()) };
                    for request in batch {
                        self.on_delivery(link, channel, leading, request?, &mut s).await?;
                    }
                }
                delivery = announced.next() => match delivery {
                    Some(Ok(delivery)) => {
                        if delivery.routing_key.as_str() == HEARTBEAT_KEY {
                            self.on_heartbeat(&delivery.data, &mut s);
                        } else {
                            self.on_announcement(&delivery.data);
                        }
                    }
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
                Some(event) = events.recv() => {
                    self.on_event(channel, leading.is_some(), event, &mut s).await;
                }
            }
        }
    }

    /// What the keeper asks of this side.
    async fn on_event(&self, channel: &Channel, leads: bool, event: KeeperEvent, s: &mut Session) {
        match event {
            KeeperEvent::Obtained(appid) => {
                if leads {
                    self.announce(channel, &appid).await;
                }
            }
            KeeperEvent::Rejected { appid, generation } => {
                if let Some(keys) = self.keyring.merchant(&appid) {
                    let request = super::wire::refresh_request(keys, &appid, generation);
                    self.send(channel, &request).await;
                }
            }
            KeeperEvent::Wanting => {
                self.keeper.wanting_heard();
                if s.last_hello.elapsed() >= HELLO_EVERY {
                    s.last_hello = StdInstant::now();
                    let hello = Request::Hello(self.requests.stamp(Kind::Hello));
                    self.send(channel, &hello).await;
                }
            }
        }
    }

    /// One message on the keeper queue: whatever it says, it was delivered to this process,
    /// which is therefore the queue's active consumer and leads.
    async fn on_delivery(
        &self,
        link: &Link,
        channel: &Channel,
        leading: &mut Option<Leading>,
        mut delivery: lapin::message::Delivery,
        s: &mut Session,
    ) -> Result<(), lapin::Error> {
        s.last_heard = StdInstant::now();
        if leading.is_none() {
            *leading = Some(self.start_leading(link).await?);
            tracing::info!(queue = %self.names.keeper(), "this process is the token keeper");
            self.heartbeat(channel).await;
            self.announce_all(channel, s).await;
        }
        self.on_request(channel, &delivery.data, s).await;
        // Kept for its acknowledgement only.
        delivery.data = Vec::new();
        let count = s.unacked.take().map_or(1, |(_, n)| n + 1);
        s.unacked = Some((delivery, count));
        if count >= ACK_EVERY {
            flush_acks(s).await;
        }
        Ok(())
    }

    /// Each second: ping, the leader's heartbeat and pending announcements, standing down
    /// when nothing arrives, and whether a relay leads at all.
    async fn tick(&self, channel: &Channel, leading: &mut Option<Leading>, s: &mut Session) {
        flush_acks(s).await;
        self.send(channel, &Request::Ping(self.requests.stamp(Kind::Ping)))
            .await;
        if leading.is_some() && s.last_heard.elapsed() >= SILENCE {
            // Not even our own pings arrive: another consumer may be active now.
            *leading = None;
            tracing::warn!(silent = ?s.last_heard.elapsed(), "token keeper heard nothing: standing down");
        }
        if leading.is_some() {
            self.heartbeat(channel).await;
            if s.announce_pending {
                self.announce_all(channel, s).await;
            }
        }
        match s.watch.check(leading.is_some(), StdInstant::now()) {
            Some(Change::Foreign(silent)) => {
                let queue = self.names.keeper();
                self.keeper.set_foreign_leader(Some(queue));
                tracing::warn!(
                    %queue,
                    silent_secs = silent.as_secs(),
                    "no relay leads: the active consumer of the keeper queue sends no sealed \
                     leader heartbeat, so it is not a weibo-relay of this deployment (or its \
                     clock is over 10 s off). No token is refreshed and no call permit issued \
                     until it goes: find it (weibo-relay check; rabbitmqctl list_consumers), \
                     close its connection, and grant read on this queue to the relay's user only"
                );
            }
            Some(Change::Cleared) => {
                self.keeper.set_foreign_leader(None);
                tracing::info!(queue = %self.names.keeper(), "a relay leads the keeper queue again");
            }
            None => {}
        }
    }

    async fn start_leading(&self, link: &Link) -> Result<Leading, lapin::Error> {
        let channel =
            tokio::time::timeout(tokens::SEND_TIMEOUT, link.connection().create_channel())
                .await
                .map_err(|_| {
                    lapin::Error::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no channel for the permits within 1 s",
                    ))
                })??;
        let permits = PermitIssuer::start(
            channel,
            self.names.permits().to_owned(),
            self.permit_rate,
            self.permit_stamps.clone(),
            &self.tasks,
        );
        Ok(self.keeper.lead().with_permits(permits))
    }
}

/// Acknowledges every delivery so far in one frame.
async fn flush_acks(s: &mut Session) {
    if let Some((last, _)) = s.unacked.take() {
        let acked = last.ack(BasicAckOptions { multiple: true });
        let _ = tokio::time::timeout(tokens::SEND_TIMEOUT, acked).await;
    }
}

/// Resolves once `link` is no longer the broker's current link.
async fn lost(links: &mut watch::Receiver<Option<Link>>, link: &Link) {
    let _ = links
        .wait_for(|current| current.as_ref().is_none_or(|c| !c.same_as(link)))
        .await;
}
