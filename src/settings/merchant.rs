//! Merchant credentials, checked once at load time so the rest of the code can trust them.

use std::collections::HashMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// A merchant's e-commerce appid: non-empty, printable, no whitespace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    /// Parses an appid as the platform sends it.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic());
        ok.then(|| Self(s.to_owned()))
    }

    /// The appid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// One merchant's credentials (section 1 of the platform spec). Debug never shows secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    /// E-commerce identity; selects the sign key of a push.
    #[serde(deserialize_with = "string_or_number")]
    pub appid: String,
    /// md5 signing key of calls and pushes.
    pub sign_key: SecretString,
    /// Open-platform appkey used to obtain the access_token.
    #[serde(deserialize_with = "string_or_number")]
    pub client_id: String,
    /// Open-platform appsecret signing the token request.
    pub client_secret: SecretString,
    /// The merchant's Weibo uid.
    #[serde(deserialize_with = "string_or_number")]
    pub uid: String,
}

impl Merchant {
    /// The validated appid.
    pub fn app_id(&self) -> AppId {
        AppId(self.appid.clone())
    }
}

/// Merchants by appid.
#[derive(Debug, Clone, Default)]
pub struct Merchants {
    list: Vec<Merchant>,
    by_appid: HashMap<String, usize>,
}

impl Merchants {
    /// Builds the lookup; validation happens in [`Merchants::validate`].
    pub fn new(list: Vec<Merchant>) -> Self {
        let by_appid = list
            .iter()
            .enumerate()
            .map(|(i, m)| (m.appid.clone(), i))
            .collect();
        Self { list, by_appid }
    }

    /// The merchant with this appid, if configured.
    pub fn get(&self, appid: &str) -> Option<&Merchant> {
        self.by_appid.get(appid).map(|&i| &self.list[i])
    }

    /// Every configured merchant, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Merchant> {
        self.list.iter()
    }

    /// Number of merchants.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when no merchant is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, m) in self.list.iter().enumerate() {
            let key = |field: &str| format!("merchants[{i}].{field}");
            // The platform's ids are numbers (its spec, section 1): anything else could only
            // be refused by the token endpoint, over and over, after the start.
            for (field, value) in [
                ("appid", &m.appid),
                ("client_id", &m.client_id),
                ("uid", &m.uid),
            ] {
                if !is_platform_id(value) {
                    return Err(ConfigError::invalid(
                        key(field),
                        "must be a number of 1 to 20 digits, as the platform gives it",
                    ));
                }
            }
            for (field, secret) in [
                ("sign_key", &m.sign_key),
                ("client_secret", &m.client_secret),
            ] {
                check_secret(secret.expose_secret())
                    .map_err(|why| ConfigError::invalid(key(field), why))?;
            }
            if self.by_appid.get(&m.appid) != Some(&i) {
                return Err(ConfigError::invalid(
                    key("appid"),
                    format!("appid {} is configured twice", m.appid),
                ));
            }
        }
        Ok(())
    }
}

/// Shortest secret accepted: a real sign key or appsecret is far longer, and anything shorter
/// is a typo or a test value that must not guard real orders.
pub const MIN_SECRET_BYTES: usize = 16;

/// Words that mark a value copied from an example instead of filled in (compared without case).
/// Every placeholder shipped in `deploy/` contains one; a test keeps it so.
const PLACEHOLDER_MARKERS: [&str; 7] = [
    "replace",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "your sign key",
];

/// True when `value` reads like a placeholder rather than a real credential.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m))
}

/// An appid, client_id or uid as the platform issues them: 1 to 20 ASCII digits.
fn is_platform_id(value: &str) -> bool {
    (1..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses a secret that is too short, a shipped placeholder, or one with spaces at either end
/// (a copy-paste slip the platform would refuse); the reason never repeats it.
fn check_secret(value: &str) -> Result<(), String> {
    if value.trim() != value {
        return Err("has spaces or line breaks at either end".into());
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_SECRET_BYTES} bytes (got {})",
            value.len()
        ));
    }
    if is_placeholder(value) {
        return Err("is a placeholder from an example file: put the real credential here".into());
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Merchants {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Merchant>::deserialize(d).map(Merchants::new)
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        U(u64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
        Raw::U(u) => u.to_string(),
    })
}
