//! The platform's identifiers as they travel through the relay, each checked once where it
//! comes in (a push, a command, the order list, the configuration, a keeper message).

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A text or a number, as JSON and TOML may give an identifier or a code: `"100023"` or
/// `100023`. Numbers keep their exact text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrNumber {
    /// Given as a string.
    Text(String),
    /// Given as a number.
    Number(serde_json::Number),
}

impl StringOrNumber {
    /// The value as text: the string, or the number as written.
    pub fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Number(number) => number.to_string(),
        }
    }
}

/// 1 to 64 printable ASCII characters: what a push, a command or a log line may carry as an
/// identifier without breaking a line, a header or a request.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses one: 1 to 64 printable ASCII characters.
            pub fn parse(s: &str) -> Option<Self> {
                is_token(s).then(|| Self(s.to_owned()))
            }

            /// As text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Why a value is not one, for an error message.
            pub const RULE: &'static str =
                concat!($what, " must be 1 to 64 printable ASCII characters");
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// From a string or a number; anything else is refused with [`Self::RULE`].
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = StringOrNumber::deserialize(d)?.into_text();
                Self::parse(&text).ok_or_else(|| serde::de::Error::custom(Self::RULE))
            }
        }
    };
}

token_id!(
    /// A merchant's e-commerce appid, as a push, a command or a keeper message names it.
    AppId,
    "appid"
);

token_id!(
    /// A sub order, as a command, the order list or a platform call names it.
    SubOrderId,
    "sub_order_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_as_text_or_numbers_and_only_as_printable_tokens() {
        let id: SubOrderId = serde_json::from_str("366383890000352").unwrap();
        assert_eq!(id.as_str(), "366383890000352");
        let id: AppId = serde_json::from_str(r#""100023""#).unwrap();
        assert_eq!(id.to_string(), "100023");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""100023""#);
        for bad in [r#""""#, r#""a b""#, r#""a\nb""#, "[1]", "null"] {
            assert!(serde_json::from_str::<AppId>(bad).is_err(), "{bad}");
        }
        assert!(SubOrderId::parse(&"9".repeat(64)).is_some());
        assert!(SubOrderId::parse(&"9".repeat(65)).is_none());
        let err = serde_json::from_str::<SubOrderId>(r#""""#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sub_order_id must be 1 to 64 printable ASCII characters"),
            "{err}"
        );
    }
}
