//! Layered settings: built-in defaults, then a TOML file, then `WEIBO_RELAY__SECTION__KEY`,
//! read into types once. Each key's type checks it as it is read (a number's type names its
//! range, a URL is parsed, a TLS file read); `validate.rs` checks what spans keys. A new key
//! is a field here and its line in `defaults.toml`.
//!
//! `Settings` also serialises, secrets in clear, for one use only: a configuration file that
//! tools and tests hand to a relay process they start.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod amqp;
mod codes;
mod files;
mod gateway;
mod load;
mod merchant;
mod validate;
mod values;

pub use amqp::{redacted, AmqpUrl, Certificates, Endpoint, PrivateKey};
pub use codes::{CodeMeaning, CodeTable};
pub(crate) use files::read_capped;
pub use files::MAX_CONFIG_BYTES;
pub use gateway::{
    glob, is_client_name, is_interface_name, GatewayClient, GatewaySettings, InterfaceSpec,
    KeyHash, PlatformMethod, Share,
};
pub use load::{ConfigError, DEFAULTS_TOML};
pub use merchant::{is_placeholder, Merchant, Merchants, MIN_SECRET_BYTES};
pub use validate::{BROKER_MAX_EXPIRY_MS, MAX_HTTP_WORKERS, MAX_RETRY_MS};
pub use values::{MaxAge, Millis, OutOfRange, Ranged, Secs};

/// Everything the relay reads from configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub http: HttpSettings,
    /// Push receiver.
    pub push: PushSettings,
    /// RabbitMQ.
    pub amqp: AmqpSettings,
    /// The Weibo platform.
    pub weibo: WeiboSettings,
    /// The fulfilment worker.
    pub worker: WorkerSettings,
    /// Reading the order list back.
    pub reconcile: ReconcileSettings,
    /// The replayable event log.
    pub event_log: EventLogSettings,
    /// The platform gateway: other systems of the merchant calling the platform through the
    /// relay.
    pub gateway: GatewaySettings,
    /// The merchants this relay serves; each push and command names one by `appid`.
    #[serde(default)]
    pub merchants: Merchants,
    /// Service-provider mode: many merchants onboarded by OAuth2 (instead of `merchants`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::provider::settings::Provider>,
}

impl Settings {
    /// Whoever signs pushes and calls: the merchants, or in provider mode the provider alone
    /// (its appid and key; the merchant is named by uid or merchant_ref).
    pub fn signers(&self) -> Merchants {
        match &self.provider {
            Some(provider) => provider.config().as_push_signer(),
            None => self.merchants.clone(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// A second listener for `/healthz`, `/readyz` and `/metrics`; when set, `bind` serves
    /// pushes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_bind: Option<SocketAddr>,
    /// Largest push body accepted (each open connection may buffer one).
    pub max_body_bytes: Ranged<1, { 16 << 20 }>,
    /// Deadline for a client to send its whole body.
    pub body_timeout_ms: Millis<1, 600_000>,
    /// Connections served at once, all listener threads together; more wait in the backlog.
    pub max_connections: Ranged<1, 100_000>,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout_secs: Secs<0, 3600>,
    /// Threads serving the push listener; 0 means one per core.
    pub workers: Ranged<0, { MAX_HTTP_WORKERS as u64 }>,
}

/// `[push]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushSettings {
    /// Path pushes are posted to.
    #[serde(deserialize_with = "values::path")]
    pub path: String,
    /// Accepted distance between the push timestamp and now.
    pub max_skew_secs: Secs<1, { u32::MAX as u64 }>,
    /// Event ids remembered for deduplication (0 disables it; about 50 bytes each).
    pub dedup_capacity: Ranged<0, 10_000_000>,
    /// The body of the answer to a stored push.
    pub success_body: String,
    /// Its `Content-Type`.
    #[serde(deserialize_with = "values::header_value")]
    pub success_content_type: String,
}

/// `[amqp]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker URL, credentials included.
    #[serde(serialize_with = "amqp::expose_url")]
    pub url: AmqpUrl,
    /// The nodes of one cluster; when given, replaces `url`.
    #[serde(default, serialize_with = "amqp::expose_urls")]
    pub urls: Vec<AmqpUrl>,
    /// PEM bundle of CAs trusted for `amqps://`, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<Certificates>,
    /// Client certificate (PEM, chain allowed) for brokers that require mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<Certificates>,
    /// Its private key (PEM); a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PrivateKey>,
    /// Topic exchange for events and outcomes.
    #[serde(deserialize_with = "values::name")]
    pub events_exchange: String,
    /// Names the event log, `<events_queue>.log`.
    #[serde(deserialize_with = "values::name")]
    pub events_queue: String,
    /// Quorum queue of fulfilment commands.
    #[serde(deserialize_with = "values::name")]
    pub fulfilment_queue: String,
    /// Deadline for a publisher confirm.
    pub confirm_timeout_ms: Millis<1, 60_000>,
    /// First reconnection delay (at most `reconnect_max_ms`).
    pub reconnect_min_ms: Millis<1, 300_000>,
    /// Largest reconnection delay.
    pub reconnect_max_ms: Millis<1, 300_000>,
    /// AMQP heartbeat interval: a dead peer is noticed after about two of them.
    pub heartbeat_secs: Secs<1, 600>,
}

/// `[weibo]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeiboSettings {
    /// Base URL of the order interfaces.
    #[serde(with = "values::url_text")]
    pub api_base: url::Url,
    /// Base URL of the token endpoint.
    #[serde(with = "values::url_text")]
    pub oauth_base: url::Url,
    /// Time-out of one platform call.
    pub timeout_ms: Millis<1, 300_000>,
    /// Attempts before a command is dead-lettered (one delay queue per attempt).
    pub max_attempts: Ranged<1, 30>,
    /// First retry delay (at most `retry_max_ms`).
    pub retry_base_ms: Millis<1, MAX_RETRY_MS>,
    /// Cap on one retry delay.
    pub retry_max_ms: Millis<1, MAX_RETRY_MS>,
    /// Platform calls per second, all processes of the deployment together.
    pub rate_limit_per_sec: Ranged<1, 5000>,
    /// Allows `http://` platform URLs on hosts other than loopback (never in production).
    pub allow_insecure_http: bool,
    /// What each platform code means.
    pub codes: CodeTable,
}

/// `[worker]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Commands fetched ahead, unacked (AMQP's 0 would mean no limit).
    pub prefetch: Ranged<1, 65_535>,
    /// Commands processed at once.
    pub concurrency: Ranged<1, 4096>,
    /// How long a command waits for a token or a permit before it is parked.
    pub token_wait_ms: Millis<1, 600_000>,
}

/// `[reconcile]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    /// Whether the token keeper sweeps the order list.
    pub enabled: bool,
    /// One sweep per merchant this often.
    pub interval_secs: Secs<1, 86_400>,
    /// How far back a sweep looks (a year at most).
    pub lookback_secs: Secs<1, { 365 * 86_400 }>,
    /// The newest changes left to the push (less than `lookback_secs`).
    pub settle_secs: Secs<0, { 365 * 86_400 - 1 }>,
}

/// `[event_log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogSettings {
    /// Retention of the stream, in RabbitMQ's `x-max-age` form (`7D`, `24h`, `90m`).
    pub max_age: MaxAge,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "docs_tests.rs"]
mod docs_tests;
