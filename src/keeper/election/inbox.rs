//! What the agent hears on the keeper queue (requests) and on the tokens exchange
//! (heartbeats), and what it says back: every message checked for the deployment's stamp or
//! seal before it is acted on.

use std::time::Instant;

use lapin::Channel;

use super::super::stamp::{self, Kind};
use super::super::wire::{self, Broadcast, Request, HEARTBEAT_KEY};
use super::{Agent, Session, ANNOUNCE_ALL_EVERY, STAMP_WINDOW};

impl Agent {
    /// A message on the keeper queue, to this process as leader.
    pub(super) async fn on_request(&self, channel: &Channel, body: &[u8], s: &mut Session) {
        let request = (body.len() <= stamp::MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Request>(body).ok())
            .flatten();
        let now_ms = crate::clock::unix_millis();
        match request {
            Some(Request::Ping(stamp)) => {
                // Any delivery proves this consumer active; a ping's stamp only says whose.
                self.genuine(Kind::Ping, &stamp, now_ms, s);
            }
            Some(Request::Hello(stamp)) => {
                if !self.genuine(Kind::Hello, &stamp, now_ms, s) {
                    return;
                }
                let due = s
                    .announced_all
                    .is_none_or(|at| at.elapsed() >= ANNOUNCE_ALL_EVERY);
                if due {
                    self.announce_all(channel, s).await;
                } else {
                    s.announce_pending = true;
                }
            }
            Some(Request::Refresh {
                appid,
                generation,
                mac,
            }) => {
                let genuine = self
                    .keyring
                    .merchant(&appid)
                    .is_some_and(|keys| wire::request_is_genuine(keys, &appid, generation, &mac));
                if !genuine {
                    self.keeper.metrics().message_rejected();
                } else if self.keeper.invalidate_generation(&appid, generation) {
                    tracing::info!(%appid, generation, "access_token rejected in another process: refreshing");
                }
            }
            None => self.keeper.metrics().message_rejected(),
        }
    }

    /// True for a request stamped by the deployment, recent and new; anything else counted.
    fn genuine(&self, kind: Kind, stamp: &stamp::Stamp, now_ms: u64, s: &mut Session) -> bool {
        let ok = self
            .request_check
            .check(kind, stamp, STAMP_WINDOW, now_ms)
            .is_ok()
            && s.requests_seen.advance(stamp);
        if !ok {
            self.keeper.metrics().message_rejected();
        }
        ok
    }

    /// A heartbeat on the tokens exchange: a relay leads, if it verifies.
    pub(super) fn on_heartbeat(&self, body: &[u8], s: &mut Session) {
        let heartbeat = (body.len() <= stamp::MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Broadcast>(body).ok())
            .flatten();
        let Some(Broadcast::Leader(stamp)) = heartbeat else {
            self.keeper.metrics().message_rejected();
            return;
        };
        let now_ms = crate::clock::unix_millis();
        let genuine = self
            .heartbeat_check
            .check(Kind::Leader, &stamp, STAMP_WINDOW, now_ms)
            .is_ok()
            && s.heartbeats_seen.advance(&stamp);
        if genuine {
            s.watch.heard(Instant::now());
        } else {
            self.keeper.metrics().message_rejected();
        }
    }

    /// Announces every current token (and so answers every hello so far).
    pub(super) async fn announce_all(&self, channel: &Channel, s: &mut Session) {
        s.announced_all = Some(Instant::now());
        s.announce_pending = false;
        for appid in self.keyring.appids() {
            self.announce(channel, appid).await;
        }
    }

    /// Says, sealed, that this process leads.
    pub(super) async fn heartbeat(&self, channel: &Channel) {
        let body = Broadcast::Leader(self.heartbeats.stamp(Kind::Leader));
        let body = serde_json::to_vec(&body).expect("a heartbeat serializes");
        self.publish(channel, self.names.tokens(), HEARTBEAT_KEY, &body)
            .await;
    }

    /// A request to whoever leads.
    pub(super) async fn send(&self, channel: &Channel, request: &Request) {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.publish(channel, "", self.names.keeper(), &body).await;
    }
}
