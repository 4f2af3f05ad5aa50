//! The seal on every order event the relay publishes, so that whoever reads the event log
//! back (a sweep, a replay, `events tail`) can tell the relay's own entries from anything
//! else a publisher on the vhost put there.
//!
//! Header `x-weibo-relay-seal`: 64 lower-case hex digits, the HMAC-SHA256 under the event
//! appid's [`Purpose::EventLog`] key (derived from its `client_secret`) over the
//! `message_id`, the routing key, the AMQP `timestamp` (8 bytes, big-endian), the
//! `x-weibo-appid` and `x-weibo-source` headers and the body, each length-prefixed.
//! Consumers may ignore it.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::{APPID_HEADER, SOURCE_HEADER};
use crate::ids::AppId;
use crate::keys::{Keyring, MerchantKeys, Purpose};

/// The header holding the seal.
pub const SEAL_HEADER: &str = "x-weibo-relay-seal";

/// What a seal covers, borrowed from the message.
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    /// `message_id`: the event id.
    pub message_id: &'a str,
    /// The routing key it was published with.
    pub routing_key: &'a str,
    /// The AMQP `timestamp` property.
    pub timestamp: u64,
    /// Header `x-weibo-appid`.
    pub appid: &'a str,
    /// Header `x-weibo-source`.
    pub source: &'a str,
    /// The body.
    pub body: &'a [u8],
}

impl Sealed<'_> {
    /// The seal of this message under `keys`.
    pub fn seal(&self, keys: &MerchantKeys) -> [u8; 32] {
        let timestamp = self.timestamp.to_be_bytes();
        keys.mac(Purpose::EventLog, &self.parts(&timestamp))
    }

    /// Writes the seal into `headers`: one hex string, the only allocation sealing adds.
    pub fn write(&self, keys: &MerchantKeys, headers: &mut FieldTable) {
        headers.insert(
            SEAL_HEADER.into(),
            AMQPValue::LongString(LongString::from(crate::hexstr::lower(&self.seal(keys)))),
        );
    }

    /// True when `tag` (raw bytes) is this message's seal under `keys`.
    fn verifies(&self, keys: &MerchantKeys, tag: &[u8]) -> bool {
        let timestamp = self.timestamp.to_be_bytes();
        keys.verify(Purpose::EventLog, &self.parts(&timestamp), tag)
    }

    fn parts<'p>(&'p self, timestamp: &'p [u8; 8]) -> [&'p [u8]; 6] {
        [
            self.message_id.as_bytes(),
            self.routing_key.as_bytes(),
            timestamp,
            self.appid.as_bytes(),
            self.source.as_bytes(),
            self.body,
        ]
    }
}

/// An entry of the event log that the relay sealed under one of the configured merchants'
/// keys: its appid, source and timestamp are the relay's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The merchant.
    pub appid: AppId,
    /// `push` or `reconcile`, as written.
    pub source: &'a str,
    /// The AMQP `timestamp`: when the relay received the event (unix seconds).
    pub timestamp: u64,
}

/// `delivery` as the relay sealed it, or `None` when it carries no seal, one that does not
/// verify, or names a merchant `keys` does not hold.
pub fn verify<'a>(keys: &Keyring, delivery: &'a Delivery) -> Option<Verified<'a>> {
    let properties = &delivery.properties;
    let headers = properties.headers().as_ref()?.inner();
    let text = |name: &str| match headers.get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        _ => None,
    };
    let appid = AppId::parse(text(APPID_HEADER)?)?;
    let source = text(SOURCE_HEADER)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(text(SEAL_HEADER)?, &mut tag).ok()?;
    let sealed = Sealed {
        message_id: properties.message_id().as_ref()?.as_str(),
        routing_key: delivery.routing_key.as_str(),
        timestamp: (*properties.timestamp())?,
        appid: appid.as_str(),
        source,
        body: &delivery.data,
    };
    sealed
        .verifies(keys.merchant(&appid)?, &tag)
        .then_some(Verified {
            appid: appid.clone(),
            source,
            timestamp: sealed.timestamp,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;

    fn keyring() -> Keyring {
        let toml = "[[merchants]]\nappid = \"100023\"\nsign_key = \"sign-key-0123456789\"\nclient_id = \"772915\"\nclient_secret = \"client-secret-0123456789\"\nuid = \"1404376560\"\n";
        Keyring::derive(
            &crate::settings::Settings::from_toml(toml)
                .unwrap()
                .merchants,
        )
    }

    fn delivery(routing_key: &str, properties: BasicProperties, body: &[u8]) -> Delivery {
        let mut d = Delivery::mock(1, "x".into(), routing_key.into(), false, body.to_vec());
        d.properties = properties;
        d
    }

    fn sealed_properties(ring: &Keyring, s: &Sealed<'_>) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(APPID_HEADER.into(), AMQPValue::LongString(s.appid.into()));
        headers.insert(SOURCE_HEADER.into(), AMQPValue::LongString(s.source.into()));
        s.write(
            ring.merchant(&AppId::parse(s.appid).unwrap()).unwrap(),
            &mut headers,
        );
        BasicProperties::default()
            .with_message_id(s.message_id.into())
            .with_timestamp(s.timestamp)
            .with_headers(headers)
    }

    #[test]
    fn only_the_relays_own_unaltered_entries_verify() {
        let ring = keyring();
        let s = Sealed {
            message_id: "e1",
            routing_key: "order.sub_order.201",
            timestamp: 1_700_000_000,
            appid: "100023",
            source: "push",
            body: b"{}",
        };
        let genuine = sealed_properties(&ring, &s);
        let ok = delivery(s.routing_key, genuine.clone(), s.body);
        assert_eq!(
            verify(&ring, &ok),
            Some(Verified {
                appid: AppId::parse("100023").unwrap(),
                source: "push",
                timestamp: 1_700_000_000
            })
        );
        // Each covered part altered in turn.
        assert_eq!(
            verify(
                &ring,
                &delivery("order.sub_order.301", genuine.clone(), s.body)
            ),
            None
        );
        assert_eq!(
            verify(&ring, &delivery(s.routing_key, genuine.clone(), b"{ }")),
            None
        );
        let later = genuine.clone().with_timestamp(u64::MAX);
        assert_eq!(verify(&ring, &delivery(s.routing_key, later, s.body)), None);
        let renamed = genuine.clone().with_message_id("e2".into());
        assert_eq!(
            verify(&ring, &delivery(s.routing_key, renamed, s.body)),
            None
        );
        let mut headers = genuine.headers().clone().unwrap();
        headers.insert(
            SOURCE_HEADER.into(),
            AMQPValue::LongString("reconcile".into()),
        );
        let resourced = genuine.clone().with_headers(headers);
        assert_eq!(
            verify(&ring, &delivery(s.routing_key, resourced, s.body)),
            None
        );
        // Unsealed, badly encoded, or under a merchant this deployment does not have.
        let mut headers = genuine.headers().clone().unwrap();
        headers.insert(SEAL_HEADER.into(), AMQPValue::LongString("zz".into()));
        let garbled = genuine.clone().with_headers(headers);
        assert_eq!(
            verify(&ring, &delivery(s.routing_key, garbled, s.body)),
            None
        );
        let bare = BasicProperties::default().with_timestamp(1);
        assert_eq!(verify(&ring, &delivery(s.routing_key, bare, s.body)), None);
        assert_eq!(verify(&Keyring::default(), &ok), None);
    }
}
