//! What the token keeper and the other processes say to each other through the broker, and how
//! it is protected. Every process of a deployment holds each merchant's `client_secret`, so
//! keys derived from it (HKDF-SHA256) need no distribution: tokens travel encrypted
//! (ChaCha20-Poly1305, bound to the merchant and the token's generation), and a request to
//! refresh carries an HMAC, so nobody else who can publish to the broker can make the keeper
//! throw a live token away.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::stamp::Stamp;
use crate::ids::AppId;
pub use crate::keys::MerchantKeys;
use crate::keys::Purpose;

/// A token as the keeper announces it: everything but the appid and generation is sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenMessage {
    /// The merchant (selects the key).
    pub appid: AppId,
    /// The token's generation in the deployment.
    pub generation: u64,
    /// 12 random bytes, base64.
    pub nonce: String,
    /// The sealed [`TokenPlain`], base64.
    pub sealed: String,
}

/// The secret part of a [`TokenMessage`].
#[derive(Deserialize)]
pub struct TokenPlain {
    /// The access_token.
    pub access_token: SecretString,
    /// The platform's `issued_at`.
    pub issued_at: i64,
    /// The platform's `expires_in`, seconds.
    pub expires_in: u64,
    /// When the keeper sent the request that obtained it, unix milliseconds.
    pub obtained_at_ms: u64,
}

/// What a process asks of the keeper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Sent by every process each second: whoever receives it is the active consumer of the
    /// keeper queue, and leads.
    Ping(Stamp),
    /// Announce every current token (a process joined, or holds no usable token).
    Hello(Stamp),
    /// The platform rejected this generation of the merchant's token: replace it, if it is
    /// still the current one.
    Refresh {
        /// The merchant.
        appid: AppId,
        /// The rejected token's generation.
        generation: u64,
        /// HMAC-SHA256 of appid and generation under the merchant's request key, hex.
        mac: String,
    },
}

/// What the leader broadcasts on the tokens exchange besides tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Broadcast {
    /// Sent by the leader each second: a relay leads (and which process).
    Leader(Stamp),
}

/// The routing key of the leader's heartbeat on the tokens exchange (tokens go by appid).
pub const HEARTBEAT_KEY: &str = "keeper.leader";

fn aad(appid: &AppId, generation: u64) -> Vec<u8> {
    format!("{appid}\n{generation}").into_bytes()
}

/// Seals `plain` for the broker.
pub fn seal(
    keys: &MerchantKeys,
    appid: &AppId,
    generation: u64,
    plain: &TokenPlain,
) -> TokenMessage {
    let cipher = ChaCha20Poly1305::new(keys.key(Purpose::Token).into());
    let nonce: [u8; 12] = rand::random();
    let json = serde_json::to_vec(&PlainOut(plain)).expect("a token serializes");
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &json,
                aad: &aad(appid, generation),
            },
        )
        .expect("encryption of a small message cannot fail");
    TokenMessage {
        appid: appid.clone(),
        generation,
        nonce: B64.encode(nonce),
        sealed: B64.encode(sealed),
    }
}

/// Opens a message sealed with `keys`; `None` when it does not decrypt (another key, altered,
/// or not ours).
pub fn open(keys: &MerchantKeys, message: &TokenMessage) -> Option<TokenPlain> {
    let cipher = ChaCha20Poly1305::new(keys.key(Purpose::Token).into());
    let nonce = B64.decode(&message.nonce).ok()?;
    if nonce.len() != 12 {
        return None;
    }
    let sealed = B64.decode(&message.sealed).ok()?;
    let json = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &aad(&message.appid, message.generation),
            },
        )
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// `SecretString` deliberately does not serialize; this is the one place a token is written,
/// and only into the sealed box.
struct PlainOut<'a>(&'a TokenPlain);

impl Serialize for PlainOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TokenPlain", 4)?;
        st.serialize_field("access_token", self.0.access_token.expose_secret())?;
        st.serialize_field("issued_at", &self.0.issued_at)?;
        st.serialize_field("expires_in", &self.0.expires_in)?;
        st.serialize_field("obtained_at_ms", &self.0.obtained_at_ms)?;
        st.end()
    }
}

fn request_mac(keys: &MerchantKeys, appid: &AppId, generation: u64) -> [u8; 32] {
    keys.mac(Purpose::RefreshRequest, &[&aad(appid, generation)])
}

/// A refresh request for `generation` of `appid`'s token.
pub fn refresh_request(keys: &MerchantKeys, appid: &AppId, generation: u64) -> Request {
    let mac = request_mac(keys, appid, generation);
    Request::Refresh {
        appid: appid.clone(),
        generation,
        mac: hex::encode(mac),
    }
}

/// True when `mac` (hex) authenticates a refresh request for `generation` of `appid`'s token;
/// compared in constant time.
pub fn request_is_genuine(keys: &MerchantKeys, appid: &AppId, generation: u64, mac: &str) -> bool {
    let Ok(mac) = hex::decode(mac) else {
        return false;
    };
    keys.verify(Purpose::RefreshRequest, &[&aad(appid, generation)], &mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(secret: &str) -> crate::settings::Merchant {
        let toml = format!(
            "[[merchants]]\nappid = \"100023\"\nsign_key = \"sign-key-0123456789\"\nclient_id = \"772915\"\nclient_secret = \"{secret}\"\nuid = \"1404376560\"\n"
        );
        crate::settings::Settings::from_toml(&toml)
            .unwrap()
            .merchants
            .get("100023")
            .unwrap()
            .clone()
    }

    fn appid(text: &str) -> AppId {
        AppId::parse(text).unwrap()
    }

    fn plain() -> TokenPlain {
        TokenPlain {
            access_token: SecretString::from("2.00secret-token-value"),
            issued_at: 1,
            expires_in: 7200,
            obtained_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_token_travels_sealed_and_opens_only_with_the_same_secret_and_generation() {
        let keys = MerchantKeys::derive(&merchant("client-secret-0123456789"));
        let message = seal(&keys, &appid("100023"), 7, &plain());
        let wire = serde_json::to_string(&message).unwrap();
        assert!(!wire.contains("2.00secret"), "{wire}");
        let opened = open(&keys, &message).expect("opens");
        assert_eq!(
            opened.access_token.expose_secret(),
            "2.00secret-token-value"
        );
        assert_eq!(opened.obtained_at_ms, 1_700_000_000_000);
        let other = MerchantKeys::derive(&merchant("another-secret-0123456789"));
        assert!(open(&other, &message).is_none());
        for tampered in [
            TokenMessage {
                generation: 8,
                ..message.clone()
            },
            TokenMessage {
                appid: appid("200046"),
                ..message.clone()
            },
            TokenMessage {
                sealed: B64.encode(b"garbage"),
                ..message.clone()
            },
            TokenMessage {
                nonce: "short".into(),
                ..message.clone()
            },
        ] {
            assert!(open(&keys, &tampered).is_none(), "{tampered:?}");
        }
        assert_eq!(format!("{keys:?}"), "MerchantKeys([redacted])");
    }

    #[test]
    fn refresh_requests_are_authenticated() {
        let keys = MerchantKeys::derive(&merchant("client-secret-0123456789"));
        let (a, b) = (appid("100023"), appid("200046"));
        let Request::Refresh { mac, .. } = refresh_request(&keys, &a, 42) else {
            unreachable!()
        };
        assert!(request_is_genuine(&keys, &a, 42, &mac));
        assert!(!request_is_genuine(&keys, &a, 43, &mac));
        assert!(!request_is_genuine(&keys, &b, 42, &mac));
        assert!(!request_is_genuine(&keys, &a, 42, "00"));
        assert!(!request_is_genuine(&keys, &a, 42, "not hex"));
        let other = MerchantKeys::derive(&merchant("another-secret-0123456789"));
        assert!(!request_is_genuine(&other, &a, 42, &mac));
        // The old, unstamped hello no longer reads as a request.
        assert!(serde_json::from_str::<Request>(r#"{"kind":"hello"}"#).is_err());
    }
}
