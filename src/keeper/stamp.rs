//! Stamps on the keeper's own messages (pings, hellos, leader heartbeats, call permits): who
//! sent one, when, its place in the sender's sequence, and an HMAC under the deployment's
//! keeper key ([`Keyring::deployment`]). Anyone who may publish on the vhost can put a message
//! on the keeper's queue, exchange or permits queue; only a stamp that verifies, is recent and
//! was not seen before is acted on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::AppId;
use crate::keys::{Keyring, MerchantKeys, Purpose};

/// Longest keeper message read at all (a genuine one is under 300 bytes); anything longer is
/// refused before it is parsed.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What a stamped message is; part of its MAC, so that one kind never passes for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A candidate's ping on the keeper queue.
    Ping,
    /// A process asking the leader to announce its tokens.
    Hello,
    /// The leader's heartbeat on the tokens exchange.
    Leader,
    /// A platform call permit.
    Permit,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Ping => b"ping",
            Self::Hello => b"hello",
            Self::Leader => b"leader",
            Self::Permit => b"permit",
        }
    }
}

/// The stamp as it travels: the sealing key's appid, the sender, its clock, its counter, the
/// MAC (hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    /// The appid whose keeper key sealed it (the deployment's smallest).
    pub appid: AppId,
    /// The sending process (32 hex digits, new at each start).
    pub sender: String,
    /// The sender's clock when it sealed it, unix milliseconds.
    pub at_ms: u64,
    /// Increasing with every stamp of this sender.
    pub counter: u64,
    /// HMAC-SHA256 of all of the above, the kind and the queue it is meant for, hex.
    pub mac: String,
}

/// Why a stamped message was refused: the `reason` label of the counters that count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Rejected {
    /// Not a stamped message, or its MAC does not verify with this process's keys.
    Forged,
    /// Genuine, but dated outside the window (a copy kept for later, or clocks apart).
    Stale,
    /// Genuine and recent, but already seen: a copy.
    Repeated,
}

/// No merchant configured, so no key to seal with.
#[derive(Debug, thiserror::Error)]
#[error("no merchant configured: nothing to seal the keeper's messages with")]
pub struct NoDeploymentKey;

/// Stamps one process's messages for one queue or exchange.
#[derive(Debug)]
pub struct Stamper {
    appid: AppId,
    keys: MerchantKeys,
    sender: String,
    context: String,
    counter: AtomicU64,
}

impl Stamper {
    /// Stamps for messages to `context` (a queue or exchange name, bound into every MAC so a
    /// stamp copied to another deployment's queue does not verify), as process `sender`.
    pub fn new(keyring: &Keyring, sender: &str, context: &str) -> Result<Self, NoDeploymentKey> {
        let (appid, keys) = keyring.deployment().ok_or(NoDeploymentKey)?;
        Ok(Self {
            appid: appid.clone(),
            keys: keys.clone(),
            sender: sender.to_owned(),
            context: context.to_owned(),
            counter: AtomicU64::new(0),
        })
    }

    /// The next stamp of `kind`, dated now.
    pub fn stamp(&self, kind: Kind) -> Stamp {
        self.stamp_at(kind, crate::clock::unix_millis())
    }

    /// The next stamp of `kind`, dated `at_ms`.
    pub fn stamp_at(&self, kind: Kind, at_ms: u64) -> Stamp {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mac = mac(
            &self.keys,
            kind,
            &self.context,
            &self.appid,
            &self.sender,
            at_ms,
            counter,
        );
        Stamp {
            appid: self.appid.clone(),
            sender: self.sender.clone(),
            at_ms,
            counter,
            mac: hex::encode(mac),
        }
    }
}

fn mac(
    keys: &MerchantKeys,
    kind: Kind,
    context: &str,
    appid: &AppId,
    sender: &str,
    at_ms: u64,
    counter: u64,
) -> [u8; 32] {
    keys.mac(
        Purpose::Keeper,
        &[
            kind.label(),
            context.as_bytes(),
            appid.as_str().as_bytes(),
            sender.as_bytes(),
            &at_ms.to_be_bytes(),
            &counter.to_be_bytes(),
        ],
    )
}

/// How old (and how far ahead of this process's clock) a stamp of one kind may be.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Oldest accepted, by this process's clock.
    pub max_age: Duration,
    /// Furthest in the future accepted (the sender's clock ahead of ours).
    pub max_ahead: Duration,
}

/// Checks stamps on messages to one queue or exchange.
#[derive(Debug, Clone)]
pub struct Verifier {
    keyring: Keyring,
    context: String,
}

impl Verifier {
    /// Verifies stamps meant for `context` with this process's keys.
    pub fn new(keyring: Keyring, context: &str) -> Self {
        Self {
            keyring,
            context: context.to_owned(),
        }
    }

    /// `Ok` when `stamp` was sealed for `kind` on this context with a key this process holds
    /// and is dated within `window` of `now_ms`. Whether it repeats an earlier one is the
    /// caller's [`Sequence`] or [`Seen`].
    pub fn check(
        &self,
        kind: Kind,
        stamp: &Stamp,
        window: Window,
        now_ms: u64,
    ) -> Result<(), Rejected> {
        let keys = self
            .keyring
            .merchant(&stamp.appid)
            .ok_or(Rejected::Forged)?;
        let tag = hex::decode(&stamp.mac).map_err(|_| Rejected::Forged)?;
        let parts = [
            kind.label(),
            self.context.as_bytes(),
            stamp.appid.as_str().as_bytes(),
            stamp.sender.as_bytes(),
            &stamp.at_ms.to_be_bytes(),
            &stamp.counter.to_be_bytes(),
        ];
        if !keys.verify(Purpose::Keeper, &parts, &tag) {
            return Err(Rejected::Forged);
        }
        let age = now_ms.saturating_sub(stamp.at_ms);
        let ahead = stamp.at_ms.saturating_sub(now_ms);
        if u128::from(age) > window.max_age.as_millis()
            || u128::from(ahead) > window.max_ahead.as_millis()
        {
            return Err(Rejected::Stale);
        }
        Ok(())
    }
}

/// The highest counter seen from each sender, for messages that arrive in the order they were
/// sent (one queue, one reader). Holds at most `capacity` senders, forgetting the one heard
/// from longest ago; only senders whose stamps verified are ever held.
#[derive(Debug)]
pub struct Sequence {
    last: HashMap<String, (u64, u64)>,
    capacity: usize,
    clock: u64,
}

impl Sequence {
    /// Remembers up to `capacity` senders.
    pub fn new(capacity: usize) -> Self {
        Self {
            last: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// True (and remembered) when `stamp` comes after everything seen from its sender.
    pub fn advance(&mut self, stamp: &Stamp) -> bool {
        self.clock += 1;
        if let Some((counter, heard)) = self.last.get_mut(&stamp.sender) {
            if stamp.counter <= *counter {
                return false;
            }
            *counter = stamp.counter;
            *heard = self.clock;
            return true;
        }
        if self.last.len() >= self.capacity {
            let oldest = self
                .last
                .iter()
                .min_by_key(|(_, (_, heard))| *heard)
                .map(|(sender, _)| sender.clone());
            if let Some(oldest) = oldest {
                self.last.remove(&oldest);
            }
        }
        self.last
            .insert(stamp.sender.clone(), (stamp.counter, self.clock));
        true
    }
}

/// Stamps seen lately, for messages that several readers share and that may come back out of
/// order (permits returned to their queue): each is accepted once, for as long as a copy
/// could still pass the age check. Holds at most `capacity`, dropping the oldest first.
#[derive(Debug)]
pub struct Seen {
    set: HashSet<(String, u64)>,
    order: VecDeque<(u64, String, u64)>,
    retention_ms: u64,
    capacity: usize,
}

impl Seen {
    /// Remembers stamps for `retention` after they were dated, at most `capacity` of them.
    pub fn new(retention: Duration, capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            retention_ms: u64::try_from(retention.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
        }
    }

    /// True (and remembered) the first time `stamp` is offered.
    pub fn first(&mut self, stamp: &Stamp, now_ms: u64) -> bool {
        while self.order.front().is_some_and(|(at, _, _)| {
            at.saturating_add(self.retention_ms) < now_ms || self.order.len() >= self.capacity
        }) {
            if let Some((_, sender, counter)) = self.order.pop_front() {
                self.set.remove(&(sender, counter));
            }
        }
        let key = (stamp.sender.clone(), stamp.counter);
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key);
        self.order
            .push_back((stamp.at_ms, stamp.sender.clone(), stamp.counter));
        true
    }

    /// How many stamps are remembered now.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests;
