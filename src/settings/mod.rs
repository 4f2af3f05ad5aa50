//! Layered settings: built-in defaults, then a TOML file, then `WEIBO_RELAY__SECTION__KEY`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

mod amqp;
mod files;
mod merchant;
mod validate;

pub use amqp::{redacted, Endpoint};
pub(crate) use files::read_capped;
pub use files::MAX_CONFIG_BYTES;
pub use merchant::{is_placeholder, AppId, Merchant, Merchants, MIN_SECRET_BYTES};
pub use validate::{BROKER_MAX_EXPIRY_MS, MAX_HTTP_WORKERS, MAX_RETRY_MS};

/// The defaults operators read: every key is documented there once.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 5] = [
    "amqp.urls",
    "weibo.codes.token_rejected",
    "weibo.codes.transient",
    "weibo.codes.already_finished",
    "weibo.codes.already_closed",
];

/// Why settings could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or did not fit the schema: the `config`
    /// crate's reason, on one line. (Kept as text, not as a source: printed with its chain,
    /// a source would repeat the same words after a colon.)
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// Dotted path of the key, such as `merchants[0].sign_key`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        Self::Load(one_line(&error.to_string()))
    }
}

/// A TOML parse error's snippet (`1 | [http`, `|      ^`) folded into its first line and
/// its reason, so a bad file is still one line of log or terminal.
fn one_line(message: &str) -> String {
    let is_snippet = |line: &str| {
        let body = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        body.is_empty() || body.starts_with('|') || body.trim().chars().all(|c| c == '^')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !is_snippet(line))
        .collect::<Vec<_>>()
        .join(": ")
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Everything the relay reads from configuration.
#[derive(Debug, Clone, Deserialize)]
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
    /// The merchants this relay serves; each push and command names one by `appid`.
    #[serde(default)]
    pub merchants: Merchants,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// A second listener for `/healthz`, `/readyz` and `/metrics`; when set, `bind` serves
    /// pushes only.
    pub admin_bind: Option<SocketAddr>,
    /// Largest push body accepted.
    pub max_body_bytes: usize,
    /// Deadline for a client to send its whole body.
    pub body_timeout_ms: u64,
    /// Connections served at once, all listener threads together; more wait in the backlog.
    pub max_connections: usize,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Threads serving the push listener; 0 means one per core.
    pub workers: usize,
}

/// `[push]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSettings {
    /// Path pushes are posted to.
    pub path: String,
    /// Accepted distance between the push timestamp and now.
    pub max_skew_secs: u64,
    /// Event ids remembered for deduplication (0 disables it).
    pub dedup_capacity: usize,
    /// The body of the answer to a stored push.
    pub success_body: String,
    /// Its `Content-Type`.
    pub success_content_type: String,
}

/// `[amqp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker URL, credentials included.
    pub url: SecretString,
    /// The nodes of one cluster; when given, replaces `url`.
    #[serde(default)]
    pub urls: Vec<SecretString>,
    /// PEM bundle of CAs trusted for `amqps://`, besides the system's.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM, chain allowed) for brokers that require mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// Its private key (PEM); a secret.
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Topic exchange for events and outcomes.
    pub events_exchange: String,
    /// Quorum queue bound to `order.#`.
    pub events_queue: String,
    /// Quorum queue of fulfilment commands.
    pub fulfilment_queue: String,
    /// Deadline for a publisher confirm.
    pub confirm_timeout_ms: u64,
    /// First reconnection delay.
    pub reconnect_min_ms: u64,
    /// Largest reconnection delay.
    pub reconnect_max_ms: u64,
    /// AMQP heartbeat interval: a dead peer is noticed after about two of them.
    pub heartbeat_secs: u16,
}

/// `[weibo]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeiboSettings {
    /// Base URL of the order interfaces.
    pub api_base: String,
    /// Base URL of the token endpoint.
    pub oauth_base: String,
    /// Time-out of one platform call.
    pub timeout_ms: u64,
    /// Attempts before a command is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base_ms: u64,
    /// Cap on one retry delay.
    pub retry_max_ms: u64,
    /// Platform calls per second, all processes of the deployment together.
    pub rate_limit_per_sec: u32,
    /// Allows `http://` platform URLs on hosts other than loopback (never in production).
    pub allow_insecure_http: bool,
    /// What each platform code means.
    pub codes: CodeSettings,
}

/// `[weibo.codes]`: platform codes by meaning; any code in no list is permanent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSettings {
    /// The access_token was rejected: refresh once, retry.
    #[serde(deserialize_with = "code_list")]
    pub token_rejected: Vec<i64>,
    /// Try again later (system errors, rate limits).
    #[serde(deserialize_with = "code_list")]
    pub transient: Vec<i64>,
    /// The sub order is already finished: success for `finish`.
    #[serde(deserialize_with = "code_list")]
    pub already_finished: Vec<i64>,
    /// The sub order is already closed: success for `close`.
    #[serde(deserialize_with = "code_list")]
    pub already_closed: Vec<i64>,
}

/// A list of codes; from the environment also one code alone (`"77777"` reaches us as a
/// number, not a one-element list), and codes as numeric text.
fn code_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Number(i64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Codes {
        Many(Vec<Code>),
        One(Code),
    }
    let parse = |c: Code| match c {
        Code::Number(n) => Ok(n),
        Code::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a code"))),
    };
    match Codes::deserialize(d)? {
        Codes::Many(list) => list.into_iter().map(parse).collect(),
        Codes::One(one) => parse(one).map(|c| vec![c]),
    }
}

impl CodeSettings {
    /// Each list with its key, in the order the table is read.
    pub fn lists(&self) -> [(&'static str, &[i64]); 4] {
        [
            ("weibo.codes.token_rejected", &self.token_rejected),
            ("weibo.codes.transient", &self.transient),
            ("weibo.codes.already_finished", &self.already_finished),
            ("weibo.codes.already_closed", &self.already_closed),
        ]
    }

    /// A code listed twice, in one list or in two meanings, is ambiguous: refuse it.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<i64, &str> = HashMap::new();
        for (key, codes) in self.lists() {
            for &code in codes {
                if code == 0 {
                    return Err(ConfigError::invalid(
                        key,
                        "0 means success and cannot be listed",
                    ));
                }
                if let Some(first) = seen.insert(code, key) {
                    let why = if first == key {
                        format!("{code} is listed twice")
                    } else {
                        format!("{code} is also listed in {first}")
                    };
                    return Err(ConfigError::invalid(key, why));
                }
            }
        }
        Ok(())
    }
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Commands fetched ahead, unacked.
    pub prefetch: u16,
    /// Commands processed at once.
    pub concurrency: usize,
    /// How long a command waits for a token before it is parked.
    pub token_wait_ms: u64,
}

/// `[reconcile]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    /// Whether the token keeper sweeps the order list.
    pub enabled: bool,
    /// One sweep per merchant this often.
    pub interval_secs: u64,
    /// How far back a sweep looks.
    pub lookback_secs: u64,
    /// The newest changes left to the push.
    pub settle_secs: u64,
}

impl ReconcileSettings {
    /// Time between sweeps.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// `[event_log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogSettings {
    /// Retention of the stream, in RabbitMQ's `x-max-age` form (`7D`, `24h`, `90m`).
    pub max_age: String,
}

impl HttpSettings {
    /// Deadline for a client to send its whole body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

impl Settings {
    /// Defaults, then `file` if given, then `WEIBO_RELAY__*` variables taken from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            let bytes = read_capped(path, MAX_CONFIG_BYTES).map_err(ConfigError::Load)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError::Load(format!("{} is not UTF-8 text", path.display())))?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WEIBO_RELAY__"))
            .collect();
        let mut environment = config::Environment::with_prefix("WEIBO_RELAY")
            .prefix_separator("__")
            .separator("__")
            // Lists (the code table) as comma-separated values.
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment);
        let built =
            builder.build().map_err(|e| match (e, file) {
                // Only the file can fail to parse (the defaults are tested): say which file.
                (e @ config::ConfigError::FileParse { .. }, Some(path)) => ConfigError::Load(
                    format!("{}: in {}", one_line(&e.to_string()), path.display()),
                ),
                (e, _) => e.into(),
            })?;
        let settings: Settings = built.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Defaults and the given TOML text only; used by tests and the demo.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULTS_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests;
