//! Entries for a stage's event log, written as the relay writes them (sealed) or as anyone
//! else who may publish on the vhost can.

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use weibo_relay::event::seal::Sealed;
use weibo_relay::keys::{Keyring, MerchantKeys};
use weibo_relay::settings::{Merchants, Settings};

use crate::support::*;

/// An entry for a stage's event log, as the relay writes it (sealed) or a stranger does.
pub struct Entry {
    pub message_id: String,
    pub timestamp: u64,
    pub source: String,
    pub body: Vec<u8>,
    keys: Option<MerchantKeys>,
}

impl Entry {
    /// Sealed with the stage's keys of [`APPID`], as the relay seals.
    pub fn sealed(settings: &Settings, message_id: &str, timestamp: u64) -> Self {
        let keys = Keyring::derive(&settings.merchants);
        Self::with(keys.merchant(APPID).cloned(), message_id, timestamp)
    }

    /// With no seal, as anyone who may publish on the vhost can write it.
    pub fn forged(message_id: &str, timestamp: u64) -> Self {
        Self::with(None, message_id, timestamp)
    }

    /// Sealed under [`APPID`] with a key derived from another `client_secret`.
    pub fn sealed_by_a_stranger(message_id: &str, timestamp: u64) -> Self {
        let stranger = weibo_relay_tooling::stage::merchant(
            APPID,
            SIGN_KEY,
            "772915",
            "a-strangers-client-secret",
            "1404376560",
        );
        let keys = Keyring::derive(&Merchants::new(vec![stranger]));
        Self::with(keys.merchant(APPID).cloned(), message_id, timestamp)
    }

    fn with(keys: Option<MerchantKeys>, message_id: &str, timestamp: u64) -> Self {
        Self {
            message_id: message_id.to_owned(),
            timestamp,
            source: "push".to_owned(),
            body: b"{}".to_vec(),
            keys,
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn source(mut self, source: &str) -> Self {
        self.source = source.to_owned();
        self
    }

    /// Its properties when published with `routing_key` (the key readers see).
    pub fn properties(&self, routing_key: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert("x-weibo-appid".into(), AMQPValue::LongString(APPID.into()));
        headers.insert(
            "x-weibo-source".into(),
            AMQPValue::LongString(self.source.as_str().into()),
        );
        if let Some(keys) = &self.keys {
            let sealed = Sealed {
                message_id: &self.message_id,
                routing_key,
                timestamp: self.timestamp,
                appid: APPID,
                source: &self.source,
                body: &self.body,
            };
            sealed.write(keys, &mut headers);
        }
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(self.message_id.as_str().into())
            .with_timestamp(self.timestamp)
            .with_headers(headers)
    }
}

/// Appends `entry` to `app`'s event log, confirmed: through the events exchange with
/// `routing_key` (so the events queue gets it too), or straight into the log.
pub async fn append(app: &TestApp, routing_key: Option<&str>, entry: &Entry) {
    append_to(app.connection(), &app.settings, routing_key, entry).await;
}

/// [`append`] to the log of the stage `settings` name, on `connection`.
pub async fn append_to(
    connection: &lapin::Connection,
    settings: &Settings,
    routing_key: Option<&str>,
    entry: &Entry,
) {
    let log = weibo_relay::amqp::Names::new(&settings.amqp)
        .event_log()
        .to_owned();
    let (exchange, key) = match routing_key {
        Some(key) => (settings.amqp.events_exchange.as_str(), key),
        None => ("", log.as_str()),
    };
    let channel = weibo_relay::amqp::confirm_channel(connection)
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &entry.body,
            entry.properties(key),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        confirm.is_ack() && confirm.take_message().is_none(),
        "not stored"
    );
    let _ = channel.close(200, "appended".into()).await;
}

/// A year from now, in unix seconds.
pub fn a_year_ahead() -> u64 {
    weibo_relay::clock::unix_secs() + 365 * 24 * 3600
}
