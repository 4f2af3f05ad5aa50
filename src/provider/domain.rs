//! The words of provider mode as types whose constructors are the only way in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The provider's own name for a merchant: 1 to 64 of `A-Z a-z 0-9 . _ -`, so it can stand in
/// a URL, a routing key's neighbour header and a log line without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MerchantRef(String);

impl MerchantRef {
    /// Parses a merchant_ref from the CLI, the gateway or the store.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(text.to_owned()))
    }

    /// The ref as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MerchantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A Weibo account id: 1 to 20 decimal digits (an int64 as the platform sends it, number or
/// string, kept as text).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Uid(String);

impl Uid {
    /// Parses a uid as the platform or a callback sends it.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Self(text.to_owned()))
    }

    /// The uid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// How a fulfilment command names its merchant in provider mode (contract: "by
/// `merchant_ref` (or `uid`)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MerchantName {
    /// The provider's own name.
    Ref(MerchantRef),
    /// The merchant's Weibo account.
    Uid(Uid),
    /// Both: they must name the same merchant, or the command is dead.
    Both(MerchantRef, Uid),
}

impl MerchantName {
    /// From a command's two optional fields; `None` when it names neither.
    pub fn of(merchant_ref: Option<MerchantRef>, uid: Option<Uid>) -> Option<Self> {
        match (merchant_ref, uid) {
            (Some(merchant_ref), Some(uid)) => Some(Self::Both(merchant_ref, uid)),
            (Some(merchant_ref), None) => Some(Self::Ref(merchant_ref)),
            (None, Some(uid)) => Some(Self::Uid(uid)),
            (None, None) => None,
        }
    }

    /// The ref the command gave, if any.
    pub fn merchant_ref(&self) -> Option<&MerchantRef> {
        match self {
            Self::Ref(merchant_ref) | Self::Both(merchant_ref, _) => Some(merchant_ref),
            Self::Uid(_) => None,
        }
    }

    /// The uid the command gave, if any.
    pub fn uid(&self) -> Option<&Uid> {
        match self {
            Self::Uid(uid) | Self::Both(_, uid) => Some(uid),
            Self::Ref(_) => None,
        }
    }
}

/// Where a merchant stands (contract: "Status of a merchant").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::EnumIter, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum MerchantStatus {
    /// A link was issued; no authorization yet.
    Pending,
    /// Tokens held and refreshed.
    Authorized,
    /// The platform refused the refresh token (or it expired): the merchant must consent again.
    NeedsReauthorization,
    /// The authorization was withdrawn; tokens deleted.
    Revoked,
}

impl MerchantStatus {
    /// The status as stored and published.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::NeedsReauthorization => "needs_reauthorization",
            Self::Revoked => "revoked",
        }
    }

    /// Reads a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "authorized" => Self::Authorized,
            "needs_reauthorization" => Self::NeedsReauthorization,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

impl fmt::Display for MerchantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a merchant: one outbox row, one message on the events exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Pending or revoked, now authorized.
    Authorized,
    /// An authorization attempt failed (denied, uid bound elsewhere, exchange refused).
    AuthorizationFailed,
    /// The refresh token was refused or expired.
    NeedsReauthorization,
    /// The authorization was withdrawn (confirmed) or revoked by the provider.
    Revoked,
    /// Was `needs_reauthorization`, authorized again.
    Recovered,
}

impl EventKind {
    /// The routing key of its message.
    pub fn routing_key(self) -> &'static str {
        match self {
            Self::Authorized => "merchant.authorized",
            Self::AuthorizationFailed => "merchant.authorization_failed",
            Self::NeedsReauthorization => "merchant.needs_reauthorization",
            Self::Revoked => "merchant.revoked",
            Self::Recovered => "merchant.recovered",
        }
    }
}

/// The body of a merchant event: `{"merchant_ref","uid","status","reason","at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantEvent {
    /// The merchant.
    pub merchant_ref: String,
    /// Its Weibo uid, when one is known.
    pub uid: Option<String>,
    /// Its status after the event.
    pub status: MerchantStatus,
    /// Why, in a word or two (`access_denied`, `invalid_grant`, `uid_bound_to_another_merchant`).
    pub reason: Option<String>,
    /// When, RFC 3339 UTC.
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_uids_refuse_what_could_smuggle() {
        assert!(MerchantRef::parse("shop-42_a.b").is_some());
        for bad in ["", "a b", "a/b", "a\nb", "é", "a%2f", &"x".repeat(65)] {
            assert!(MerchantRef::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Uid::parse("1404376560").is_some());
        for bad in ["", "-1", "1e9", " 1", "12345678901234567890123"] {
            assert!(Uid::parse(bad).is_none(), "{bad:?}");
        }
        for status in [
            MerchantStatus::Pending,
            MerchantStatus::Authorized,
            MerchantStatus::NeedsReauthorization,
            MerchantStatus::Revoked,
        ] {
            assert_eq!(MerchantStatus::parse(status.as_str()), Some(status));
        }
    }
}
