//! Layered settings: built-in defaults, then a TOML file, then `WEIBO_RELAY__SECTION__KEY`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod merchant;

pub use merchant::{is_placeholder, AppId, Merchant, Merchants, MIN_SECRET_BYTES};

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

impl AmqpSettings {
    /// Deadline for a publisher confirm.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }

    /// The URL with its password replaced, fit for logs.
    pub fn redacted_url(&self) -> String {
        redacted(self.url.expose_secret())
    }

    /// The nodes to connect to (`urls`, or `url` alone), each with `heartbeat_secs` unless its
    /// URL sets its own, and how it is shown in logs (password hidden).
    pub fn endpoints(&self) -> Result<Vec<(lapin::uri::AMQPUri, String)>, ConfigError> {
        let (key, urls) = if self.urls.is_empty() {
            ("amqp.url", std::slice::from_ref(&self.url))
        } else {
            ("amqp.urls", self.urls.as_slice())
        };
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if self.urls.is_empty() {
                    key.to_owned()
                } else {
                    format!("{key}[{i}]")
                };
                let text = url.expose_secret();
                // The parser's message could repeat the URL, password and all: say only that.
                let mut uri: lapin::uri::AMQPUri = text.parse().map_err(|_| {
                    ConfigError::invalid(
                        &name,
                        "is not an AMQP URL (amqp://user:password@host:port/vhost)",
                    )
                })?;
                if amqp_password(text).is_some_and(is_placeholder) {
                    return Err(ConfigError::invalid(
                        &name,
                        "the password is a placeholder from an example file",
                    ));
                }
                // RabbitMQ's built-in account, fine on a developer's machine; anywhere else
                // it is a password everyone knows (and RabbitMQ refuses it by default).
                if uri.authority.userinfo.username == "guest"
                    && uri.authority.userinfo.password == "guest"
                    && !is_loopback(&uri.authority.host)
                {
                    return Err(ConfigError::invalid(
                        &name,
                        "guest/guest is RabbitMQ's default account, allowed only on this machine: give the relay a user of its own",
                    ));
                }
                if uri.query.heartbeat.is_none() {
                    uri.query.heartbeat = Some(self.heartbeat_secs);
                }
                Ok((uri, redacted(text)))
            })
            .collect()
    }

    /// The first node's address (tests and tools that need one).
    pub fn uri(&self) -> Result<lapin::uri::AMQPUri, String> {
        self.endpoints()
            .map(|mut e| e.remove(0).0)
            .map_err(|e| e.to_string())
    }

    /// The TLS settings for `amqps://`: the CA bundle added to the system's roots and the
    /// client certificate, read and checked (PEM parses, the key belongs to the certificate).
    pub fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
            })
        };
        let certificates = |key: &str, path: &std::path::Path, pem: &[u8]| {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    ConfigError::invalid(
                        key,
                        format!("{} is not PEM certificates: {e}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} holds no certificate", path.display()),
                ));
            }
            Ok(certs)
        };
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if let Some(path) = &self.tls_ca_file {
            let pem = read("amqp.tls_ca_file", path)?;
            certificates("amqp.tls_ca_file", path, &pem)?;
            tls.cert_chain = Some(String::from_utf8_lossy(&pem).into_owned());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "amqp.tls_key_file",
                    "is required with amqp.tls_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "amqp.tls_cert_file",
                    "is required with amqp.tls_key_file",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read("amqp.tls_cert_file", cert_path)?;
                let key = read("amqp.tls_key_file", key_path)?;
                let chain = certificates("amqp.tls_cert_file", cert_path, &cert)?;
                // The key's contents never reach a message: only its file's name.
                let private = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
                    ConfigError::invalid(
                        "amqp.tls_key_file",
                        format!("{} is not a PEM private key", key_path.display()),
                    )
                })?;
                let provider = rustls::crypto::ring::default_provider();
                rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
                    ConfigError::invalid(
                        "amqp.tls_key_file",
                        format!(
                            "{} does not go with the certificate in {}: {e}",
                            key_path.display(),
                            cert_path.display()
                        ),
                    )
                })?;
                tls.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 { pem: cert, key });
            }
        }
        Ok(tls)
    }
}

impl HttpSettings {
    /// Deadline for a client to send its whole body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// `url` with its password replaced by `[redacted]`, fit for a log line or an error.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:[redacted]{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
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
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
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
        let settings: Settings = builder.build()?.try_deserialize()?;
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

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.push.path.starts_with('/') {
            return Err(ConfigError::invalid("push.path", "must start with '/'"));
        }
        for (key, value) in [
            ("http.max_body_bytes", self.http.max_body_bytes as u64),
            ("http.max_connections", self.http.max_connections as u64),
            ("http.body_timeout_ms", self.http.body_timeout_ms),
            ("amqp.confirm_timeout_ms", self.amqp.confirm_timeout_ms),
            ("weibo.timeout_ms", self.weibo.timeout_ms),
            ("weibo.max_attempts", u64::from(self.weibo.max_attempts)),
            (
                "weibo.rate_limit_per_sec",
                u64::from(self.weibo.rate_limit_per_sec),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        if self.weibo.max_attempts > 30 {
            // One delay queue per step: more would be a queue sprawl, not a retry policy.
            return Err(ConfigError::invalid(
                "weibo.max_attempts",
                "must be at most 30",
            ));
        }
        for (key, name) in [
            ("amqp.events_exchange", &self.amqp.events_exchange),
            ("amqp.events_queue", &self.amqp.events_queue),
            ("amqp.fulfilment_queue", &self.amqp.fulfilment_queue),
        ] {
            if name.is_empty() || name.len() > 200 {
                return Err(ConfigError::invalid(key, "must be 1 to 200 characters"));
            }
        }
        if self.amqp.reconnect_min_ms == 0
            || self.amqp.reconnect_min_ms > self.amqp.reconnect_max_ms
        {
            return Err(ConfigError::invalid(
                "amqp.reconnect_min_ms",
                "must be greater than 0 and at most amqp.reconnect_max_ms",
            ));
        }
        for (key, url) in [
            ("weibo.api_base", &self.weibo.api_base),
            ("weibo.oauth_base", &self.weibo.oauth_base),
        ] {
            check_platform_url(url, self.weibo.allow_insecure_http)
                .map_err(|why| ConfigError::invalid(key, why))?;
        }
        self.weibo.codes.validate()?;
        let age = &self.event_log.max_age;
        let (number, unit) = age.split_at(age.len().saturating_sub(1));
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit())
            || !["Y", "M", "D", "h", "m", "s"].contains(&unit)
            || number.parse::<u32>().map_or(true, |n| n == 0)
        {
            return Err(ConfigError::invalid(
                "event_log.max_age",
                "must be a number and a unit: Y, M, D, h, m or s (such as 7D)",
            ));
        }
        if self.reconcile.interval_secs == 0 {
            return Err(ConfigError::invalid(
                "reconcile.interval_secs",
                "must be greater than 0",
            ));
        }
        if self.reconcile.settle_secs >= self.reconcile.lookback_secs {
            return Err(ConfigError::invalid(
                "reconcile.lookback_secs",
                "must be greater than reconcile.settle_secs",
            ));
        }
        self.amqp.endpoints()?;
        self.amqp.tls()?;
        if actix_web::http::header::HeaderValue::from_str(&self.push.success_content_type).is_err()
        {
            return Err(ConfigError::invalid(
                "push.success_content_type",
                "is not a valid header value",
            ));
        }

        self.merchants.validate()
    }
}

/// Where the platform client may go: HTTPS, or plain HTTP to this machine (the sandbox), or
/// plain HTTP anywhere only when `weibo.allow_insecure_http` says so. The token and the
/// signed requests travel in these calls.
fn check_platform_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = is_loopback(parsed.host_str().ok_or("has no host")?);
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure_http => Ok(()),
        "http" => Err(
            "must be https:// (plain http is allowed only to loopback, or with weibo.allow_insecure_http = true)"
                .into(),
        ),
        other => Err(format!("scheme {other} is not https")),
    }
}

/// True for this machine's own names and addresses (IPv6 with or without brackets).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The password part of an AMQP URL, if it has one.
fn amqp_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}

#[cfg(test)]
mod tests;
