//! The token keeper's broker side: which process of the deployment leads, and how the others
//! get its tokens.
//!
//! **Election.** Every `worker`/`serve` process consumes the quorum queue
//! `<fulfilment_queue>.keeper`, declared with `x-single-active-consumer`: RabbitMQ delivers to
//! exactly one of its consumers at a time and hands over to the next when that consumer's
//! channel or connection goes (closed, or silent past the heartbeat timeout). Every process
//! also publishes a ping there each second, so the active consumer learns that it is active
//! from the first message it receives: from then on it leads. It stops leading at once when
//! its broker link goes, when its consumer ends, or when it has received nothing, not even its
//! own pings, for three seconds (then it may no longer be the active consumer).
//!
//! **Tokens.** The leader announces each token it obtains, sealed (see [`super::sealed`]),
//! on the topic exchange `<fulfilment_queue>.tokens`; every process reads it through an
//! exclusive queue of its own and adopts newer generations. A process that joins, or finds no
//! usable token, sends `hello` to the leader's queue, and the leader announces every current
//! token again. A process whose call was refused for its token sends an authenticated refresh
//! request for that token's generation; the leader refreshes only if it is still current.
//!
//! **Rate.** The leader also issues the deployment's platform call permits ([`crate::permits`]).

use std::collections::HashMap;
use std::time::{Duration, Instant as StdInstant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sealed::{self, MerchantKeys, Request, TokenMessage, TokenPlain};
use super::{KeeperEvents, Lead, TokenKeeper};
use crate::amqp::{Broker, Link};
use crate::permits::PermitIssuer;
use crate::weibo::Token;

/// How often every process pings the keeper queue.
const PING_EVERY: Duration = Duration::from_secs(1);
/// A leader that receives nothing for this long stands down.
const SILENCE: Duration = Duration::from_secs(3);
/// Pings live this long in the queue, so none pile up while nobody consumes.
const PING_LIFE: &str = "3000";
/// A process asks the leader for its tokens at most this often.
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// Pause after the broker side failed, before it starts again on the current link.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The names the keeper's broker side uses, all derived from the fulfilment queue's.
#[derive(Debug, Clone)]
pub struct ClusterNames {
    /// The single-active-consumer queue whose active consumer leads; requests to the leader
    /// go there too.
    pub keeper_queue: String,
    /// The topic exchange tokens are announced on.
    pub tokens_exchange: String,
    /// The queue of platform call permits.
    pub permits_queue: String,
}

impl ClusterNames {
    /// The names for `fulfilment_queue`.
    pub fn new(fulfilment_queue: &str) -> Self {
        Self {
            keeper_queue: format!("{fulfilment_queue}.keeper"),
            tokens_exchange: format!("{fulfilment_queue}.tokens"),
            permits_queue: format!("{fulfilment_queue}.permits"),
        }
    }
}

/// Runs a process's part in the election and in passing tokens around.
pub struct Agent {
    broker: Broker,
    keeper: TokenKeeper,
    keys: HashMap<String, MerchantKeys>,
    names: ClusterNames,
    permit_rate: u32,
    process: String,
}

/// What a process holds while it leads; dropping it stops leading.
struct Leading {
    _lead: Lead,
    permits: PermitIssuer,
}

impl Agent {
    /// The agent for `keeper`'s process, issuing `permit_rate` platform calls per second while
    /// it leads.
    pub fn new(broker: Broker, keeper: TokenKeeper, names: ClusterNames, permit_rate: u32) -> Self {
        let keys = keeper
            .merchants()
            .iter()
            .map(|m| (m.appid.clone(), MerchantKeys::derive(m)))
            .collect();
        Self {
            broker,
            keeper,
            keys,
            names,
            permit_rate,
            process: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Runs until `stop` is cancelled, on every broker link in turn.
    pub fn spawn(self, mut events: KeeperEvents, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut links = self.broker.subscribe();
            loop {
                let link = tokio::select! {
                    _ = stop.cancelled() => return,
                    link = links.wait_for(Option::is_some) => match link {
                        Ok(link) => link.clone(),
                        Err(_) => return,
                    },
                };
                let Some(link) = link else { continue };
                if let Err(error) = self.serve(&link, &mut events, &stop).await {
                    tracing::warn!(%error, "token keeper's broker side failed; starting again");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESTART_PAUSE) => {}
                }
            }
        })
    }

    async fn serve(
        &self,
        link: &Link,
        events: &mut KeeperEvents,
        stop: &CancellationToken,
    ) -> Result<(), lapin::Error> {
        let channel = link.connection().create_channel().await?;
        let mut leading = None;
        let served = self
            .serve_on(link, &channel, &mut leading, events, stop)
            .await;
        if let Some(leading) = leading.take() {
            leading.permits.stop().await;
            if stop.is_cancelled() {
                tracing::info!("token keeper stopped with the process");
            } else {
                tracing::warn!("no longer the token keeper");
            }
        }
        // The channel closes before the connection may: lapin logs an error for a channel
        // dropped while its connection closes.
        let _ = channel.close(200, "token keeper stopping".into()).await;
        served
    }

    async fn serve_on(
        &self,
        link: &Link,
        channel: &Channel,
        leading: &mut Option<Leading>,
        events: &mut KeeperEvents,
        stop: &CancellationToken,
    ) -> Result<(), lapin::Error> {
        let mut announced = self.subscribe(channel).await?;
        let mut inbox = self.candidate(channel).await?;
        self.send(channel, &Request::Hello).await;
        let mut last_hello = StdInstant::now();
        let mut last_heard = StdInstant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut links = self.broker.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = lost(&mut links, link) => return Ok(()),
                _ = ping.tick() => {
                    self.send(channel, &Request::Ping).await;
                    if leading.is_some() && last_heard.elapsed() >= SILENCE {
                        // Not even our own pings arrive: another consumer may be active now.
                        *leading = None;
                        tracing::warn!(silent = ?last_heard.elapsed(), "token keeper heard nothing: standing down");
                    }
                }
                request = inbox.next() => match request {
                    Some(Ok(delivery)) => {
                        last_heard = StdInstant::now();
                        let _ = delivery.ack(lapin::options::BasicAckOptions::default()).await;
                        if leading.is_none() {
                            *leading = Some(self.start_leading(link).await?);
                            tracing::info!(queue = %self.names.keeper_queue, "this process is the token keeper");
                            self.announce_all(channel).await;
                        }
                        self.on_request(channel, &delivery.data).await;
                    }
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
                delivery = announced.next() => match delivery {
                    Some(Ok(delivery)) => self.on_announcement(&delivery.data),
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
                Some(appid) = events.obtained.recv() => {
                    if leading.is_some() {
                        self.announce(channel, &appid).await;
                    }
                }
                Some((appid, generation)) = events.rejected.recv() => {
                    if let Some(keys) = self.keys.get(&appid) {
                        let request = sealed::refresh_request(keys, &appid, generation);
                        self.send(channel, &request).await;
                    }
                }
                _ = events.wanting.notified() => {
                    if last_hello.elapsed() >= HELLO_EVERY {
                        last_hello = StdInstant::now();
                        self.send(channel, &Request::Hello).await;
                    }
                }
            }
        }
    }

    /// This process's own queue on the tokens exchange, gone with its connection.
    async fn subscribe(&self, channel: &Channel) -> Result<Consumer, lapin::Error> {
        let queue = format!("{}.{}", self.names.tokens_exchange, self.process);
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
                self.names.tokens_exchange.as_str().into(),
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
    async fn candidate(&self, channel: &Channel) -> Result<Consumer, lapin::Error> {
        channel
            .basic_consume(
                self.names.keeper_queue.as_str().into(),
                format!("weibo-relay-keeper-{}", self.process)
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    async fn start_leading(&self, link: &Link) -> Result<Leading, lapin::Error> {
        let permits = PermitIssuer::start(
            link.connection().create_channel().await?,
            self.names.permits_queue.clone(),
            self.permit_rate,
        );
        Ok(Leading {
            _lead: self.keeper.lead(),
            permits,
        })
    }

    fn on_announcement(&self, body: &[u8]) {
        let Ok(message) = serde_json::from_slice::<TokenMessage>(body) else {
            self.keeper.metrics().message_rejected();
            return;
        };
        let Some(plain) = self
            .keys
            .get(&message.appid)
            .and_then(|keys| sealed::open(keys, &message))
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

    async fn on_request(&self, channel: &Channel, body: &[u8]) {
        match serde_json::from_slice::<Request>(body) {
            Ok(Request::Ping) => {}
            Ok(Request::Hello) => self.announce_all(channel).await,
            Ok(Request::Refresh {
                appid,
                generation,
                mac,
            }) => {
                let genuine = self
                    .keys
                    .get(&appid)
                    .is_some_and(|keys| sealed::request_is_genuine(keys, &appid, generation, &mac));
                if !genuine {
                    self.keeper.metrics().message_rejected();
                } else if self.keeper.invalidate_generation(&appid, generation) {
                    tracing::info!(%appid, generation, "access_token rejected in another process: refreshing");
                }
            }
            Err(_) => self.keeper.metrics().message_rejected(),
        }
    }

    async fn announce_all(&self, channel: &Channel) {
        for appid in self.keys.keys() {
            self.announce(channel, appid).await;
        }
    }

    async fn announce(&self, channel: &Channel, appid: &str) {
        let (Some((token, generation)), Some(keys)) =
            (self.keeper.current(appid), self.keys.get(appid))
        else {
            return;
        };
        let age = Instant::now().saturating_duration_since(token.obtained_at());
        let plain = TokenPlain {
            access_token: token.secret().expose_secret().to_owned().into(),
            issued_at: token.issued_at(),
            expires_in: token.expires_in().as_secs(),
            obtained_at_ms: crate::clock::unix_millis().saturating_sub(age.as_millis() as u64),
        };
        let message = sealed::seal(keys, appid, generation, &plain);
        let body = serde_json::to_vec(&message).expect("a sealed token serializes");
        self.publish(channel, &self.names.tokens_exchange, appid, &body)
            .await;
    }

    async fn send(&self, channel: &Channel, request: &Request) {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.publish(channel, "", &self.names.keeper_queue, &body)
            .await;
    }

    /// Fire and forget: a lost announcement or request is made good by the next `hello`.
    /// Nothing here outlives a few seconds: no request piles up while no process consumes.
    async fn publish(&self, channel: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
        let published = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_expiration(PING_LIFE.into()),
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, exchange, "token keeper message not sent");
        }
    }
}

/// Resolves once `link` is no longer the broker's current link.
async fn lost(links: &mut watch::Receiver<Option<Link>>, link: &Link) {
    let _ = links
        .wait_for(|current| current.as_ref().is_none_or(|c| !c.same_as(link)))
        .await;
}
