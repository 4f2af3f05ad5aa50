//! Tokens at rest: AES-256-GCM under a key ring from configuration (`provider.store_keys`,
//! newest first). Every ciphertext carries the id of its key beside it, a fresh 96-bit nonce
//! before it, and is bound (associated data) to its merchant, its column and its key id, so a
//! row's token pasted into another row or column, or relabelled with another key id, does not
//! open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::domain::MerchantRef;

/// Bytes of a nonce (GCM's 96 bits), stored first in every sealed blob.
const NONCE_BYTES: usize = 12;
/// Bytes of the tag GCM appends.
const TAG_BYTES: usize = 16;
/// Longest key id: it is stored beside every token and shown in `merchants` output.
const MAX_KEY_ID: usize = 32;
/// Versions the associated data, so a future format cannot be confused with this one.
const AAD_PREFIX: &[u8] = b"weibo-relay provider token v1";

/// Which token a ciphertext holds: part of what it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The access token.
    AccessToken,
    /// The refresh token.
    RefreshToken,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// A token as stored: the id of the key that sealed it and `nonce || ciphertext || tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The key's id from `provider.store_keys`.
    pub key_id: String,
    /// Nonce, ciphertext and tag.
    pub blob: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("bytes", &self.blob.len())
            .finish()
    }
}

/// Why a key ring could not be built from configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    /// `store_keys` is empty.
    #[error("provider.store_keys is empty: at least one key is needed")]
    Empty,
    /// An id is empty, too long or has characters other than `A-Z a-z 0-9 . _ -`.
    #[error("provider.store_keys: key id {0:?} must be 1 to {MAX_KEY_ID} of A-Z a-z 0-9 . _ -")]
    BadId(String),
    /// Two keys share an id.
    #[error("provider.store_keys: key id {0:?} appears twice")]
    DuplicateId(String),
    /// A key is not base64 of exactly 32 bytes (the key itself is never quoted).
    #[error("provider.store_keys: key {0:?} is not base64 of 32 bytes (openssl rand -base64 32)")]
    BadKey(String),
}

/// Why a sealed token did not open. Says which key, never anything of the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The key id is not in the ring (removed from configuration before `rekey` moved it).
    #[error("token sealed with key {0:?}, which provider.store_keys no longer holds")]
    UnknownKey(String),
    /// Wrong key, wrong row or column, or altered bytes.
    #[error("token sealed with key {0:?} does not open for this merchant and column")]
    Tampered(String),
}

/// The keys of `provider.store_keys`, newest first. Debug shows the ids only.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

impl KeyRing {
    /// A ring from `(id, base64 key)` pairs, newest first.
    pub fn from_config<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a SecretString)>,
    ) -> Result<Self, KeyRingError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for (id, key) in entries {
            let id_ok = (1..=MAX_KEY_ID).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !id_ok {
                return Err(KeyRingError::BadId(crate::telemetry::clip(id, 40)));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(KeyRingError::DuplicateId(id.to_owned()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.expose_secret().trim())
                .map_err(|_| KeyRingError::BadKey(id.to_owned()))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| KeyRingError::BadKey(id.to_owned()))?;
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys })
    }

    /// The id of the key new tokens are sealed with.
    pub fn newest_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// Seals `token` for `merchant`'s `column` with the newest key and a fresh nonce.
    pub fn seal(&self, merchant: &MerchantRef, column: Column, token: &SecretString) -> Sealed {
        let Some((id, cipher)) = self.keys.first() else {
            // from_config refuses an empty ring; this keeps the type honest without a panic.
            return Sealed {
                key_id: String::new(),
                blob: Vec::new(),
            };
        };
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(merchant, column, id);
        let payload = Payload {
            msg: token.expose_secret().as_bytes(),
            aad: &aad,
        };
        // AES-GCM fails only for messages beyond 64 GiB; a token is a few hundred bytes.
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed {
            key_id: id.clone(),
            blob,
        }
    }

    /// Opens a token sealed for `merchant`'s `column`, with whichever key of the ring sealed it.
    pub fn open(
        &self,
        merchant: &MerchantRef,
        column: Column,
        sealed: &Sealed,
    ) -> Result<SecretString, OpenError> {
        let (id, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(crate::telemetry::clip(&sealed.key_id, 40)))?;
        let tampered = || OpenError::Tampered(id.clone());
        if sealed.blob.len() < NONCE_BYTES + TAG_BYTES {
            return Err(tampered());
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_BYTES);
        let aad = associated_data(merchant, column, id);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| tampered())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| tampered())
    }

    /// True when `sealed` is under the newest key (nothing for `rekey` to do).
    pub fn is_newest(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.newest_id()
    }
}

/// What a ciphertext is bound to. Each part ends with a NUL, which none of them may contain.
fn associated_data(merchant: &MerchantRef, column: Column, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96);
    for part in [
        AAD_PREFIX,
        column.name().as_bytes(),
        key_id.as_bytes(),
        merchant.as_str().as_bytes(),
    ] {
        aad.extend_from_slice(part);
        aad.push(0);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    fn ring(entries: &[(&str, u8)]) -> KeyRing {
        let keys: Vec<(String, SecretString)> = entries
            .iter()
            .map(|(id, b)| ((*id).to_owned(), key(*b)))
            .collect();
        KeyRing::from_config(keys.iter().map(|(id, k)| (id.as_str(), k))).unwrap()
    }

    #[test]
    fn sealed_tokens_open_only_where_they_were_sealed() {
        let ring = ring(&[("k2", 2), ("k1", 1)]);
        let a = MerchantRef::parse("shop-a").unwrap();
        let b = MerchantRef::parse("shop-b").unwrap();
        let token = SecretString::from("2.00secret-token");
        let sealed = ring.seal(&a, Column::AccessToken, &token);
        assert_eq!(sealed.key_id, "k2");
        let opened = ring.open(&a, Column::AccessToken, &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "2.00secret-token");
        // Another row, another column, a relabelled key id, a flipped bit: none opens.
        assert_eq!(
            ring.open(&b, Column::AccessToken, &sealed).err(),
            Some(OpenError::Tampered("k2".into()))
        );
        assert!(ring.open(&a, Column::RefreshToken, &sealed).is_err());
        let relabelled = Sealed {
            key_id: "k1".into(),
            ..sealed.clone()
        };
        assert!(ring.open(&a, Column::AccessToken, &relabelled).is_err());
        let mut flipped = sealed.clone();
        flipped.blob[20] ^= 1;
        assert!(ring.open(&a, Column::AccessToken, &flipped).is_err());
        // Same token twice: different nonces, different bytes.
        assert_ne!(ring.seal(&a, Column::AccessToken, &token).blob, sealed.blob);
        assert!(!format!("{ring:?}{sealed:?}").contains("secret"));
    }

    #[test]
    fn an_old_key_still_opens_until_it_is_removed() {
        let old = ring(&[("k1", 1)]);
        let a = MerchantRef::parse("shop-a").unwrap();
        let sealed = old.seal(&a, Column::RefreshToken, &SecretString::from("r"));
        let rotated = ring(&[("k2", 2), ("k1", 1)]);
        assert!(!rotated.is_newest(&sealed));
        assert_eq!(
            rotated
                .open(&a, Column::RefreshToken, &sealed)
                .unwrap()
                .expose_secret(),
            "r"
        );
        let dropped = ring(&[("k2", 2)]);
        assert_eq!(
            dropped.open(&a, Column::RefreshToken, &sealed).err(),
            Some(OpenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn configuration_errors_name_the_key_never_its_bytes() {
        let short = SecretString::from(base64::engine::general_purpose::STANDARD.encode([7u8; 16]));
        let err = KeyRing::from_config([("k1", &short)]).unwrap_err();
        assert_eq!(err, KeyRingError::BadKey("k1".into()));
        assert!(!err.to_string().contains(short.expose_secret()));
        let good = key(1);
        assert_eq!(
            KeyRing::from_config([("k1", &good), ("k1", &good)]).unwrap_err(),
            KeyRingError::DuplicateId("k1".into())
        );
        assert!(matches!(
            KeyRing::from_config([("bad id", &good)]),
            Err(KeyRingError::BadId(_))
        ));
        assert_eq!(
            KeyRing::from_config(std::iter::empty()).unwrap_err(),
            KeyRingError::Empty
        );
    }
}
