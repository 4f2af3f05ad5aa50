//! Merchant credentials, checked once at load time so the rest of the code can trust them.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;

use super::ConfigError;
use crate::ids::{AppId, StringOrNumber};

/// One merchant's credentials (section 1 of the platform spec), each checked as it is read:
/// ids are the platform's numbers, secrets long enough and no placeholders. Debug never shows
/// secrets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    /// E-commerce identity; selects the sign key of a push.
    #[serde(deserialize_with = "platform_appid")]
    appid: AppId,
    /// md5 signing key of calls and pushes.
    #[serde(deserialize_with = "secret", serialize_with = "expose")]
    sign_key: SecretString,
    /// Open-platform appkey used to obtain the access_token.
    #[serde(deserialize_with = "platform_id")]
    client_id: String,
    /// Open-platform appsecret signing the token request.
    #[serde(deserialize_with = "secret", serialize_with = "expose")]
    client_secret: SecretString,
    /// The merchant's Weibo uid.
    #[serde(deserialize_with = "platform_id")]
    uid: String,
}

impl Merchant {
    /// The merchant's appid.
    pub fn appid(&self) -> &AppId {
        &self.appid
    }

    /// The md5 signing key of calls and pushes.
    pub fn sign_key(&self) -> &SecretString {
        &self.sign_key
    }

    /// The open-platform appkey.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The open-platform appsecret.
    pub fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// The merchant's Weibo uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }
}

/// Equal when every field is, secrets compared in constant time.
impl PartialEq for Merchant {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &SecretString, b: &SecretString| -> bool {
            a.expose_secret()
                .as_bytes()
                .ct_eq(b.expose_secret().as_bytes())
                .into()
        };
        self.appid == other.appid
            && self.client_id == other.client_id
            && self.uid == other.uid
            && same(&self.sign_key, &other.sign_key)
            && same(&self.client_secret, &other.client_secret)
    }
}

/// Merchants by appid.
#[derive(Debug, Clone, Default)]
pub struct Merchants {
    list: Vec<Merchant>,
    by_appid: HashMap<AppId, usize>,
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

    /// The merchant with this appid (an [`AppId`], or its text), if configured.
    pub fn get<Q>(&self, appid: &Q) -> Option<&Merchant>
    where
        AppId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
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

    /// No appid twice: which merchant a push or a command names must be clear.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, m) in self.list.iter().enumerate() {
            if self.by_appid.get(&m.appid) != Some(&i) {
                return Err(ConfigError::invalid(
                    format!("merchants[{i}].appid"),
                    format!("appid {} is configured twice", m.appid),
                ));
            }
        }
        Ok(())
    }
}

impl PartialEq for Merchants {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
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

impl Serialize for Merchants {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(s)
    }
}

/// An id as the platform issues appids, client ids and uids: 1 to 20 ASCII digits, as text
/// or a number. Anything else could only be refused by the token endpoint, over and over,
/// after the start.
fn platform_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = StringOrNumber::deserialize(d)?.into_text();
    if (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(de::Error::custom(
            "must be a number of 1 to 20 digits, as the platform gives it",
        ))
    }
}

/// The appid of a configured merchant: a platform id.
fn platform_appid<'de, D: Deserializer<'de>>(d: D) -> Result<AppId, D::Error> {
    let id = platform_id(d)?;
    AppId::parse(&id).ok_or_else(|| de::Error::custom(AppId::RULE))
}

/// A secret, refused when it is too short, a shipped placeholder, or has spaces at either end.
fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let secret = SecretString::deserialize(d)?;
    check_secret(secret.expose_secret()).map_err(de::Error::custom)?;
    Ok(secret)
}

/// Writes a secret in clear: only for a configuration file (see [`super::Settings`]).
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}
