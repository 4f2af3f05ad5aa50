//! `[gateway]`: the merchant's own systems calling any capability interface through the relay
//! (docs/platform-gateway.md). The catalogue is configuration (`[gateway.interfaces]`, every
//! row in `defaults.toml`), and so are the clients: a name, the SHA-256 of a key shown once,
//! what they may call and how fast.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::values::{Millis, Ranged};
use super::ConfigError;
use crate::ids::AppId;

/// `[gateway]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// The gateway's own listener; unset, there is no gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Everything one gateway request may take: waits, calls and retries.
    pub deadline_ms: Millis<1, 600_000>,
    /// Of the deployment's platform rate, what gateway calls may take while commands wait.
    pub share: Share,
    /// Largest request body accepted.
    pub max_body_bytes: Ranged<1, { 16 << 20 }>,
    /// Most parameters one call may carry.
    pub max_params: Ranged<1, 10_000>,
    /// The catalogue: `"<group>/<name>"` to its method and whether it writes.
    pub interfaces: BTreeMap<String, InterfaceSpec>,
    /// Who may call, with what key, what and how fast.
    #[serde(default)]
    pub clients: Vec<GatewayClient>,
}

/// How the platform takes one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PlatformMethod {
    /// Parameters in the query.
    Get,
    /// Parameters in a form body.
    Post,
}

/// One row of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    /// GET or POST.
    pub method: PlatformMethod,
    /// Whether a call changes something on the platform: never repeated after a time-out,
    /// and audited.
    pub writes: bool,
    /// Whether fulfilment commands (`"action":"call"`) may call it.
    #[serde(default = "yes")]
    pub commands: bool,
}

fn yes() -> bool {
    true
}

/// A fraction from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Share(f64);

impl Share {
    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(f64),
            Text(String),
        }
        let n = match Given::deserialize(d)? {
            Given::Number(n) => n,
            Given::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| de::Error::custom("must be a number from 0 to 1"))?,
        };
        if (0.0..=1.0).contains(&n) {
            Ok(Self(n))
        } else {
            Err(de::Error::custom(format_args!(
                "must be a number from 0 to 1 (got {n})"
            )))
        }
    }
}

/// One client of the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayClient {
    /// Its name in metrics and audit lines.
    pub name: String,
    /// SHA-256 of its key (the key itself is never configured).
    pub key_sha256: KeyHash,
    /// The interfaces it may call: names, or globs with `*`.
    pub interfaces: Vec<String>,
    /// The merchants it may call for, or `["*"]`.
    pub appids: Vec<String>,
    /// Its own calls per second (a burst of as many).
    pub rate_limit_per_sec: Ranged<1, 100_000>,
    /// Provider mode: may manage merchants (`/v1/merchants`: links, status, revoke).
    #[serde(default)]
    pub merchants: bool,
}

impl GatewayClient {
    /// True when `interface` is one this client may call.
    pub fn allows_interface(&self, interface: &str) -> bool {
        self.interfaces.iter().any(|p| glob(p, interface))
    }

    /// True when this client may call for `appid`.
    pub fn allows_appid(&self, appid: &str) -> bool {
        self.appids.iter().any(|a| a == "*" || a == appid)
    }
}

/// The SHA-256 of a client key; shown shortened, never as the key it hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        use sha2::{Digest, Sha256};
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}..)", &self.hex()[..8])
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| de::Error::custom("must be 64 hex digits (the key's SHA-256)"))?;
        Ok(Self(bytes))
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

/// `*` matches any run of characters, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            // Each start of the rest in turn: patterns are short, interface names too.
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// `<group>/<name>`, each a word of ASCII letters, digits and `_`: what a URL path of the
/// platform may be built from.
pub fn is_interface_name(name: &str) -> bool {
    let word = |w: &str| {
        (1..=64).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    matches!(name.split_once('/'), Some((g, n)) if word(g) && word(n))
}

/// A client name fit for a metric label (and not the label of everything else).
pub fn is_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name != crate::gateway::OTHER
}

impl GatewaySettings {
    /// The rows' names, the clients' names, keys, patterns and appids.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for name in self.interfaces.keys() {
            if !is_interface_name(name) {
                return Err(ConfigError::invalid(
                    format!("gateway.interfaces.{name:?}"),
                    "must be <group>/<name>, each of ASCII letters, digits and _",
                ));
            }
        }
        let (mut names, mut keys) = (HashSet::new(), HashSet::new());
        for (i, client) in self.clients.iter().enumerate() {
            let key = |field: &str| format!("gateway.clients[{i}].{field}");
            if !is_client_name(&client.name) {
                return Err(ConfigError::invalid(
                    key("name"),
                    "must be 1 to 64 of a-z, 0-9, _ and -, and not \"other\"",
                ));
            }
            if !names.insert(&client.name) {
                return Err(ConfigError::invalid(
                    key("name"),
                    "names another client too",
                ));
            }
            if !keys.insert(client.key_sha256.hex()) {
                return Err(ConfigError::invalid(
                    key("key_sha256"),
                    "is another client's key too",
                ));
            }
            // A back office that only manages merchants (provider mode) calls no interface.
            if client.interfaces.is_empty() && !client.merchants {
                return Err(ConfigError::invalid(key("interfaces"), "is empty"));
            }
            for pattern in &client.interfaces {
                if !self.interfaces.keys().any(|name| glob(pattern, name)) {
                    return Err(ConfigError::invalid(
                        key("interfaces"),
                        format!("{pattern:?} matches no interface of gateway.interfaces"),
                    ));
                }
            }
            if client.appids.is_empty() && !client.merchants {
                return Err(ConfigError::invalid(key("appids"), "is empty (or [\"*\"])"));
            }
            for appid in &client.appids {
                if appid != "*" && AppId::parse(appid).is_none() {
                    return Err(ConfigError::invalid(key("appids"), AppId::RULE));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
