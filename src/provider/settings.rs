//! The `[provider]` section (contract: "Configuration and paths"), as written
//! ([`ProviderSettings`]) and as the code uses it once checked ([`ProviderConfig`]).

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use super::crypto::{KeyRing, KeyRingError};
use crate::settings::{is_placeholder, MIN_SECRET_BYTES};

/// Shortest and longest link life: a merchant needs minutes to log in; a link alive for days
/// is a credential lying around.
const LINK_TTL_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// One entry of `provider.store_keys`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreKey {
    /// Recorded beside every ciphertext sealed with this key.
    pub id: String,
    /// Base64 of 32 random bytes.
    #[serde(serialize_with = "expose")]
    pub key: SecretString,
}

impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.key.expose_secret() == other.key.expose_secret()
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// `[provider]` as written in the configuration file. Debug shows no secret; serialising
/// writes them in clear, for a configuration file only (as `Settings` does).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The provider's e-commerce appid (signs calls, selects the key of pushes).
    pub appid: String,
    /// The provider's e-commerce sign key.
    #[serde(serialize_with = "expose")]
    pub sign_key: SecretString,
    /// The provider's open-platform app.
    pub client_id: String,
    /// Its app secret.
    #[serde(serialize_with = "expose")]
    pub client_secret: SecretString,
    /// The callback registered with Weibo; its path is served by the connect pages.
    pub redirect_uri: String,
    /// Where links point (`{public_base}/connect/<id>`).
    pub public_base: String,
    /// The only origins a browser is sent back to.
    #[serde(default)]
    pub return_url_origins: Vec<String>,
    /// Life of a link and of the `state` made from it.
    #[serde(default = "default_link_ttl")]
    pub link_ttl_secs: u64,
    /// PostgreSQL URL (may hold a password).
    #[serde(serialize_with = "expose")]
    pub store_url: SecretString,
    /// Token keys, newest first.
    pub store_keys: Vec<StoreKey>,
    /// The signed push field naming the merchant.
    #[serde(default = "default_push_field")]
    pub push_merchant_field: String,
    /// The provider's name on the connect page (default: "Weibo app <client_id>").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl PartialEq for ProviderSettings {
    fn eq(&self, other: &Self) -> bool {
        let secret = |a: &SecretString, b: &SecretString| a.expose_secret() == b.expose_secret();
        self.appid == other.appid
            && secret(&self.sign_key, &other.sign_key)
            && self.client_id == other.client_id
            && secret(&self.client_secret, &other.client_secret)
            && self.redirect_uri == other.redirect_uri
            && self.public_base == other.public_base
            && self.return_url_origins == other.return_url_origins
            && self.link_ttl_secs == other.link_ttl_secs
            && secret(&self.store_url, &other.store_url)
            && self.store_keys == other.store_keys
            && self.push_merchant_field == other.push_merchant_field
            && self.name == other.name
    }
}

/// Writes a secret in clear: only for a configuration file.
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// `[provider]` read once: as written (what a tool writes back into a configuration file) and
/// as checked (what provider mode runs on). Reading it is parsing it: a bad value stops the
/// load, naming its key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "ProviderSettings", into = "ProviderSettings")]
pub struct Provider {
    written: ProviderSettings,
    config: ProviderConfig,
}

impl Provider {
    /// What provider mode runs on.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// As written.
    pub fn written(&self) -> &ProviderSettings {
        &self.written
    }
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl TryFrom<ProviderSettings> for Provider {
    type Error = ProviderSettingsError;

    fn try_from(written: ProviderSettings) -> Result<Self, Self::Error> {
        let config = written.parse()?;
        Ok(Self { written, config })
    }
}

impl From<Provider> for ProviderSettings {
    fn from(provider: Provider) -> Self {
        provider.written
    }
}

fn default_link_ttl() -> u64 {
    1800
}

fn default_push_field() -> String {
    "uid".into()
}

/// Why `[provider]` cannot run; each names its key, never a secret's value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderSettingsError {
    /// A key's value is unusable.
    #[error("provider.{key} {reason}")]
    Invalid {
        /// The key under `[provider]`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The key ring is unusable.
    #[error(transparent)]
    Keys(#[from] KeyRingError),
}

/// An origin a browser may be sent back to: scheme, host and port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnOrigins(Vec<url::Origin>);

impl ReturnOrigins {
    /// `candidate` parsed and normalised when it is an absolute http(s) URL under one of the
    /// origins, with no user info and no backslash, control character or space anywhere;
    /// otherwise `None`. The normalised form is what a browser is sent to.
    pub fn check(&self, candidate: &str) -> Option<Url> {
        let suspicious = candidate
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
        if suspicious || candidate.len() > 2048 {
            return None;
        }
        let url = Url::parse(candidate).ok()?;
        let clean = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && url.host_str().is_some();
        (clean && self.0.contains(&url.origin())).then_some(url)
    }
}

/// `[provider]` checked: what the rest of provider mode takes.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The provider's e-commerce appid.
    pub appid: String,
    /// Its sign key.
    pub sign_key: SecretString,
    /// Its open-platform app.
    pub client_id: String,
    /// Its app secret.
    pub client_secret: SecretString,
    /// The registered callback.
    pub redirect_uri: Url,
    /// Where links point.
    pub public_base: Url,
    /// Where browsers may be sent back.
    pub return_origins: ReturnOrigins,
    /// Life of a link and its state.
    pub link_ttl: Duration,
    /// The store.
    pub store_url: SecretString,
    /// The token keys.
    pub keys: KeyRing,
    /// The push field naming the merchant.
    pub push_merchant_field: String,
    /// The provider's name on the connect page.
    pub name: String,
}

impl ProviderSettings {
    /// Checks every key and builds what the code uses.
    pub fn parse(&self) -> Result<ProviderConfig, ProviderSettingsError> {
        let invalid = |key: &'static str, reason: &str| ProviderSettingsError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        for (key, value) in [("appid", &self.appid), ("client_id", &self.client_id)] {
            if !((1..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())) {
                return Err(invalid(
                    key,
                    "must be 1 to 20 digits, as the platform issues it",
                ));
            }
        }
        for (key, value) in [
            ("sign_key", &self.sign_key),
            ("client_secret", &self.client_secret),
        ] {
            check_secret(value.expose_secret()).map_err(|reason| invalid(key, &reason))?;
        }
        let redirect_uri =
            served_url(&self.redirect_uri).map_err(|r| invalid("redirect_uri", r))?;
        let public_base = served_url(&self.public_base).map_err(|r| invalid("public_base", r))?;
        let mut origins = Vec::new();
        for text in &self.return_url_origins {
            origins.push(parse_origin(text).map_err(|r| invalid("return_url_origins", &r))?);
        }
        if !LINK_TTL_SECS.contains(&self.link_ttl_secs) {
            return Err(invalid(
                "link_ttl_secs",
                &format!(
                    "must be {} to {}",
                    LINK_TTL_SECS.start(),
                    LINK_TTL_SECS.end()
                ),
            ));
        }
        let store_url = self.store_url.expose_secret();
        if !(store_url.starts_with("postgres://") || store_url.starts_with("postgresql://")) {
            return Err(invalid("store_url", "must be a postgres:// URL"));
        }
        if store_url.split('@').next().is_some_and(is_placeholder) {
            return Err(invalid(
                "store_url",
                "holds a placeholder from an example file",
            ));
        }
        let keys = KeyRing::from_config(self.store_keys.iter().map(|k| (k.id.as_str(), &k.key)))?;
        let field = &self.push_merchant_field;
        if !((1..=32).contains(&field.len())
            && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(invalid(
                "push_merchant_field",
                "must be 1 to 32 of a-z and _",
            ));
        }
        let name = match &self.name {
            Some(name) if name.trim().is_empty() || name.chars().count() > 80 => {
                return Err(invalid("name", "must be 1 to 80 characters"))
            }
            Some(name) => name.trim().to_owned(),
            None => format!("Weibo app {}", self.client_id),
        };
        Ok(ProviderConfig {
            appid: self.appid.clone(),
            sign_key: self.sign_key.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            redirect_uri,
            public_base,
            return_origins: ReturnOrigins(origins),
            link_ttl: Duration::from_secs(self.link_ttl_secs),
            store_url: self.store_url.clone(),
            keys,
            push_merchant_field: field.clone(),
            name,
        })
    }
}

impl ProviderConfig {
    /// The provider as the receiver's one "merchant": its appid and sign key verify every
    /// push, its client_secret keys the events' seals. The uid is never used (the provider
    /// holds no self-developed token).
    pub fn as_push_signer(&self) -> crate::settings::Merchants {
        let fields = serde_json::json!({
            "appid": self.appid,
            "sign_key": self.sign_key.expose_secret(),
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "uid": "0",
        });
        // Every field was checked by `parse` with the merchants' own rules.
        let merchant =
            serde_json::from_value(fields).expect("a parsed [provider] is a valid merchant entry");
        crate::settings::Merchants::new(vec![merchant])
    }
}

/// The same rules as the merchants' secrets; the reason never repeats the value.
fn check_secret(value: &str) -> Result<(), String> {
    if value.trim() != value {
        return Err("has spaces or line breaks at either end".into());
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(format!("must be at least {MIN_SECRET_BYTES} bytes"));
    }
    if is_placeholder(value) {
        return Err("is a placeholder from an example file: put the real credential here".into());
    }
    Ok(())
}

/// A URL the merchant's browser is sent to carrying a code or a link: https, or http on
/// loopback only (tests, a relay behind a local TLS proxy); no user info, query or fragment.
fn served_url(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "is not an absolute URL")?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err("must be https (http only on loopback)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user info");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment");
    }
    Ok(url)
}

/// `scheme://host[:port]` and nothing more.
fn parse_origin(text: &str) -> Result<url::Origin, String> {
    let url = Url::parse(text).map_err(|_| format!("{text:?} is not an absolute URL"))?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.host_str().is_some();
    if !bare {
        return Err(format!(
            "{text:?} must be scheme://host[:port] with nothing after it"
        ));
    }
    Ok(url.origin())
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
