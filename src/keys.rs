//! Keys for what the relay writes to the broker and later reads back (the event log, token
//! announcements, keeper messages, permits). Anyone allowed to publish on the vhost can put a
//! message where the relay reads, so every such message the relay acts on carries a seal only
//! the deployment can make. Every process of a deployment holds each merchant's
//! `client_secret`, so keys derived from it (HKDF-SHA256, one per purpose and merchant) need no
//! distribution and no new setting.

use std::collections::BTreeMap;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::ids::AppId;
use crate::settings::{Merchant, Merchants};

/// What a key is for; a key never serves two purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Encrypting token announcements (ChaCha20-Poly1305).
    Token,
    /// Authenticating refresh requests to the keeper.
    RefreshRequest,
    /// Authenticating events in the event log.
    EventLog,
    /// Authenticating messages on the keeper's queues: heartbeats, hellos, permits.
    Keeper,
}

impl Purpose {
    fn label(self) -> &'static str {
        // The first two labels are those of earlier releases: tokens and refresh requests
        // still open across a rolling upgrade.
        match self {
            Self::Token => "token",
            Self::RefreshRequest => "refresh request",
            Self::EventLog => "event log",
            Self::Keeper => "keeper",
        }
    }
}

/// One merchant's keys. Debug shows nothing of them.
#[derive(Clone)]
pub struct MerchantKeys {
    token: [u8; 32],
    request: [u8; 32],
    event_log: [u8; 32],
    keeper: [u8; 32],
}

impl std::fmt::Debug for MerchantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKeys([redacted])")
    }
}

impl MerchantKeys {
    /// Derives every key from the merchant's `client_secret`, bound to its appid.
    pub fn derive(merchant: &Merchant) -> Self {
        let hkdf = Hkdf::<Sha256>::new(
            Some(b"weibo-relay broker messages"),
            merchant.client_secret().expose_secret().as_bytes(),
        );
        let expand = |purpose: Purpose| {
            let mut key = [0u8; 32];
            let info = format!("{} v1 {}", purpose.label(), merchant.appid());
            hkdf.expand(info.as_bytes(), &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            key
        };
        Self {
            token: expand(Purpose::Token),
            request: expand(Purpose::RefreshRequest),
            event_log: expand(Purpose::EventLog),
            keeper: expand(Purpose::Keeper),
        }
    }

    /// The key for `purpose`.
    pub fn key(&self, purpose: Purpose) -> &[u8; 32] {
        match purpose {
            Purpose::Token => &self.token,
            Purpose::RefreshRequest => &self.request,
            Purpose::EventLog => &self.event_log,
            Purpose::Keeper => &self.keeper,
        }
    }

    /// HMAC-SHA256 under the key for `purpose` over `parts`, each length-prefixed so that no
    /// two different lists of parts authenticate alike.
    pub fn mac(&self, purpose: Purpose, parts: &[&[u8]]) -> [u8; 32] {
        mac_of(self.key(purpose), parts)
            .finalize()
            .into_bytes()
            .into()
    }

    /// True when `tag` is the MAC of `parts` for `purpose`; compared in constant time.
    pub fn verify(&self, purpose: Purpose, parts: &[&[u8]], tag: &[u8]) -> bool {
        mac_of(self.key(purpose), parts).verify_slice(tag).is_ok()
    }
}

fn mac_of(key: &[u8; 32], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// Every merchant's keys, by appid.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    by_appid: BTreeMap<AppId, MerchantKeys>,
}

impl Keyring {
    /// The keys of every configured merchant.
    pub fn derive(merchants: &Merchants) -> Self {
        Self {
            by_appid: merchants
                .iter()
                .map(|m| (m.appid().clone(), MerchantKeys::derive(m)))
                .collect(),
        }
    }

    /// One merchant's keys (by [`AppId`], or its text).
    pub fn merchant<Q>(&self, appid: &Q) -> Option<&MerchantKeys>
    where
        AppId: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.by_appid.get(appid)
    }

    /// The appids, in order.
    pub fn appids(&self) -> impl Iterator<Item = &AppId> {
        self.by_appid.keys()
    }

    /// The keys that seal messages of the whole deployment rather than of one merchant
    /// (heartbeats, permits), with the appid naming them: the smallest appid, so that a
    /// rolling update adding a merchant with a larger appid keeps old and new processes
    /// understanding each other. A reader verifies with its own keys of the named appid.
    pub fn deployment(&self) -> Option<(&AppId, &MerchantKeys)> {
        self.by_appid.iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchants(list: &[(&str, &str)]) -> Merchants {
        let toml: String = list
            .iter()
            .map(|(appid, secret)| {
                format!(
                    "[[merchants]]\nappid = \"{appid}\"\nsign_key = \"sign-key-0123456789\"\nclient_id = \"772915\"\nclient_secret = \"{secret}\"\nuid = \"1404376560\"\n"
                )
            })
            .collect();
        crate::settings::Settings::from_toml(&toml)
            .unwrap()
            .merchants
    }

    #[test]
    fn a_mac_binds_the_purpose_the_merchant_and_the_parts_boundaries() {
        let ring = Keyring::derive(&merchants(&[
            ("100023", "client-secret-0123456789"),
            ("200046", "client-secret-0123456789"),
        ]));
        let a = ring.merchant("100023").unwrap();
        let b = ring.merchant("200046").unwrap();
        let tag = a.mac(Purpose::EventLog, &[b"ab", b"c"]);
        assert!(a.verify(Purpose::EventLog, &[b"ab", b"c"], &tag));
        assert!(!a.verify(Purpose::EventLog, &[b"a", b"bc"], &tag));
        assert!(!a.verify(Purpose::Keeper, &[b"ab", b"c"], &tag));
        // The same secret under another appid is another key.
        assert!(!b.verify(Purpose::EventLog, &[b"ab", b"c"], &tag));
        assert!(!a.verify(Purpose::EventLog, &[b"ab", b"c"], &tag[..31]));
        assert_eq!(format!("{a:?}"), "MerchantKeys([redacted])");
    }

    #[test]
    fn the_deployment_key_is_the_smallest_appids() {
        let ring = Keyring::derive(&merchants(&[
            ("300069", "client-secret-0123456789"),
            ("100023", "other-secret-0123456789"),
        ]));
        assert_eq!(ring.deployment().unwrap().0.as_str(), "100023");
        assert!(Keyring::default().deployment().is_none());
    }
}
