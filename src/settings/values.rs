//! The types a setting is read into: a key's type says what it accepts, so a value is checked
//! where it is read, once, and the rest of the relay takes it as it is. A number's type names
//! its range ([`Ranged`], [`Millis`], [`Secs`]); a refusal names the range, and the key.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number outside its key's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be {min} to {max} (got {got})")]
pub struct OutOfRange {
    /// The least accepted.
    pub min: u64,
    /// The most accepted.
    pub max: u64,
    /// What was given.
    pub got: i128,
}

/// Reads a whole number in `min..=max` (from a number, or a numeric text as the environment
/// may give it); anything else is refused naming the range.
fn in_range<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    struct Whole(u64, u64);
    impl Whole {
        fn check<E: de::Error>(&self, got: i128) -> Result<u64, E> {
            let (min, max) = (self.0, self.1);
            u64::try_from(got)
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| E::custom(OutOfRange { min, max, got }))
        }
    }
    impl Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from {} to {}", self.0, self.1)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            self.check(v.into())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            self.check(v.into())
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<u64, E> {
            self.check(v)
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<u64, E> {
            self.check(i128::try_from(v).unwrap_or(i128::MAX))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            match v.trim().parse::<i128>() {
                Ok(n) => self.check(n),
                Err(_) => Err(E::custom(format_args!(
                    "must be a whole number from {} to {}",
                    self.0, self.1
                ))),
            }
        }
    }
    d.deserialize_any(Whole(min, max))
}

/// A whole number in `MIN..=MAX`: a count, a size, a rate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ranged<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Ranged<MIN, MAX> {
    /// `n`, when it is in range.
    pub const fn new(n: u64) -> Option<Self> {
        if MIN <= n && n <= MAX {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number as a `usize` (the range fits one).
    pub const fn as_usize(self) -> usize {
        const { assert!(MAX <= usize::MAX as u64) };
        self.0 as usize
    }

    /// The number as a `u32` (the range fits one).
    pub const fn as_u32(self) -> u32 {
        const { assert!(MAX <= u32::MAX as u64) };
        self.0 as u32
    }

    /// The number as a `u16` (the range fits one).
    pub const fn as_u16(self) -> u16 {
        const { assert!(MAX <= u16::MAX as u64) };
        self.0 as u16
    }
}

/// Durations in a key's unit: `Millis` for the `_ms` keys, `Secs` for the `_secs` keys.
macro_rules! duration_in {
    ($(#[$doc:meta])* $name:ident, $from:path, $to:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name<const MIN: u64, const MAX: u64>(Duration);

        impl<const MIN: u64, const MAX: u64> $name<MIN, MAX> {
            /// `n` of the key's unit, when it is in range.
            pub const fn new(n: u64) -> Option<Self> {
                if MIN <= n && n <= MAX {
                    Some(Self($from(n)))
                } else {
                    None
                }
            }

            /// The duration.
            pub const fn get(self) -> Duration {
                self.0
            }
        }

        impl<const MIN: u64, const MAX: u64> TryFrom<u64> for $name<MIN, MAX> {
            type Error = OutOfRange;
            fn try_from(n: u64) -> Result<Self, OutOfRange> {
                Self::new(n).ok_or(OutOfRange { min: MIN, max: MAX, got: n.into() })
            }
        }

        impl<const MIN: u64, const MAX: u64> fmt::Debug for $name<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for $name<MIN, MAX> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                in_range(d, MIN, MAX).map(|n| Self($from(n)))
            }
        }

        impl<const MIN: u64, const MAX: u64> Serialize for $name<MIN, MAX> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(u64::try_from(self.0.$to()).unwrap_or(u64::MAX))
            }
        }
    };
}

duration_in!(
    /// A duration given in whole milliseconds, `MIN..=MAX` of them.
    Millis,
    Duration::from_millis,
    as_millis
);

duration_in!(
    /// A duration given in whole seconds, `MIN..=MAX` of them.
    Secs,
    Duration::from_secs,
    as_secs
);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Ranged<MIN, MAX> {
    type Error = OutOfRange;
    fn try_from(n: u64) -> Result<Self, OutOfRange> {
        Self::new(n).ok_or(OutOfRange {
            min: MIN,
            max: MAX,
            got: n.into(),
        })
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Debug for Ranged<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Ranged<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Ranged<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        in_range(d, MIN, MAX).map(Self)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Ranged<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A retention in RabbitMQ's `x-max-age` form (`7D`: a number from 1 to 4294967295 and one
/// of Y, M, D, h, m, s), as written and as a duration (a year of 365 days, a month of 30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxAge {
    text: String,
    duration: Duration,
}

impl MaxAge {
    /// Reads `7D`, `24h`, `90m`.
    pub fn parse(text: &str) -> Option<Self> {
        let (number, unit) = text.split_at(text.len().checked_sub(1)?);
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let count = u64::from(number.parse::<u32>().ok().filter(|&n| n > 0)?);
        let unit_secs = match unit {
            "Y" => 365 * 86_400,
            "M" => 30 * 86_400,
            "D" => 86_400,
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => return None,
        };
        Some(Self {
            text: text.to_owned(),
            duration: Duration::from_secs(count.checked_mul(unit_secs)?),
        })
    }

    /// As written, the form RabbitMQ takes.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// As a duration.
    pub fn get(&self) -> Duration {
        self.duration
    }
}

impl<'de> Deserialize<'de> for MaxAge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            de::Error::custom(
                "must be a number from 1 to 4294967295 and a unit: Y, M, D, h, m or s (such as 7D)",
            )
        })
    }
}

impl Serialize for MaxAge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// `url::Url` from and to its text; a text that is no URL is refused saying why.
pub(super) mod url_text {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
        let text = String::deserialize(d)?;
        url::Url::parse(&text).map_err(|e| de::Error::custom(format_args!("not a URL: {e}")))
    }

    pub fn serialize<S: Serializer>(url: &url::Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }
}

/// An exchange or queue name: 1 to 200 characters (RabbitMQ takes 255; the relay derives
/// longer names from it).
pub(super) fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() || name.chars().count() > 200 {
        return Err(de::Error::custom("must be 1 to 200 characters"));
    }
    Ok(name)
}

/// The push path: it starts with `/`.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') {
        return Err(de::Error::custom("must start with '/'"));
    }
    Ok(path)
}

/// A text that is a valid HTTP header value (a `Content-Type`).
pub(super) fn header_value<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    if actix_web::http::header::HeaderValue::from_str(&value).is_err() {
        return Err(de::Error::custom("is not a valid header value"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_log_retention_reads_as_rabbitmq_reads_it() {
        let age = |text: &str| MaxAge::parse(text).map(|a| a.get());
        assert_eq!(age("7D"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(age("1Y"), Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(age("2M"), Some(Duration::from_secs(60 * 86_400)));
        assert_eq!(age("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            age("4294967295Y"),
            Some(Duration::from_secs(4_294_967_295 * 365 * 86_400))
        );
        for bad in ["", "D", "0D", "7d", "7 D", "-1D", "4294967296Y", "7"] {
            assert_eq!(age(bad), None, "{bad}");
        }
        assert_eq!(MaxAge::parse("7D").unwrap().as_str(), "7D");
    }

    #[test]
    fn a_number_is_taken_in_its_range_only_and_the_refusal_names_it() {
        type Workers = Ranged<0, 512>;
        let read = |json: &str| serde_json::from_str::<Workers>(json).map_err(|e| e.to_string());
        assert_eq!(read("512").map(Ranged::get), Ok(512));
        assert_eq!(read("\"7\"").map(Ranged::get), Ok(7));
        for (json, got) in [
            ("513", "513"),
            ("-1", "-1"),
            ("\"99999999999999999999\"", "9999"),
        ] {
            let err = read(json).unwrap_err();
            assert!(err.starts_with("must be 0 to 512 (got "), "{json}: {err}");
            assert!(err.contains(got), "{json}: {err}");
        }
        assert!(read("1.5")
            .unwrap_err()
            .contains("a whole number from 0 to 512"));
        assert!(read("\"x\"")
            .unwrap_err()
            .contains("whole number from 0 to 512"));
        let timeout: Millis<1, 600_000> = serde_json::from_str("5000").unwrap();
        assert_eq!(timeout.get(), Duration::from_millis(5000));
        assert_eq!(serde_json::to_string(&timeout).unwrap(), "5000");
        assert_eq!(
            Secs::<1, 600>::try_from(0),
            Err(OutOfRange {
                min: 1,
                max: 600,
                got: 0
            })
        );
        assert_eq!(
            Ranged::<1, 4096>::new(4096).map(Ranged::as_usize),
            Some(4096)
        );
    }
}
