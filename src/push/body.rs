//! Reading a push body (form-encoded or flat JSON) into unique, decoded fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{malformed, PushError};
use crate::telemetry::{clip, shown};

/// More fields than any real push has; beyond it the body is refused rather than processed.
const MAX_FIELDS: usize = 64;
/// Longest parser message repeated in an answer or a log line.
pub(super) const MAX_PARSER_MESSAGE: usize = 200;

/// The two encodings the platform may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// `application/x-www-form-urlencoded`
    Form,
    /// `application/json`
    Json,
}

impl ContentKind {
    /// Reads a `Content-Type` header; anything but form or JSON in UTF-8 is refused (415).
    pub fn from_header(value: Option<&str>) -> Result<Self, PushError> {
        let value = value.unwrap_or_default();
        let mut parts = value.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let kind = match essence.as_str() {
            "application/x-www-form-urlencoded" => Self::Form,
            "application/json" => Self::Json,
            "" => return Err(PushError::UnsupportedMediaType("none given".into())),
            _ => return Err(PushError::UnsupportedMediaType(shown(&essence))),
        };
        for param in parts {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("charset") {
                let charset = val.trim().trim_matches('"').to_ascii_lowercase();
                if charset != "utf-8" && charset != "utf8" {
                    return Err(PushError::UnsupportedMediaType(format!(
                        "charset {}",
                        shown(&charset)
                    )));
                }
            }
        }
        Ok(kind)
    }
}

/// A decoded body: every field once, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(BTreeMap<String, String>);

impl Body {
    /// Decodes `bytes` as the given kind; duplicated or undecodable fields are malformed.
    pub fn parse(kind: ContentKind, bytes: &[u8]) -> Result<Self, PushError> {
        let pairs = match kind {
            ContentKind::Form => parse_form(bytes)?,
            ContentKind::Json => parse_json(bytes)?,
        };
        let mut fields = BTreeMap::new();
        for (k, v) in pairs {
            if k.is_empty() {
                return Err(malformed("empty field name"));
            }
            if fields.len() >= MAX_FIELDS {
                return Err(malformed(format!("more than {MAX_FIELDS} fields")));
            }
            if fields.contains_key(&k) {
                return Err(malformed(format!("field {} is given twice", shown(&k))));
            }
            fields.insert(k, v);
        }
        Ok(Self(fields))
    }

    pub(super) fn into_fields(self) -> BTreeMap<String, String> {
        self.0
    }
}

fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, PushError> {
    bytes
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &[][..]),
            };
            Ok((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

/// Decodes one form-encoded name or value in one pass into one buffer: `+` is a space, `%XX`
/// a byte, and a `%` without two hex digits after it stays as it is (as `percent_decode`
/// reads it). A push's `data` is most of its body and mostly escapes, so the two passes and
/// two copies this replaces were the larger part of parsing a push.
fn form_decode(raw: &[u8]) -> Result<String, PushError> {
    let hex = |b: Option<&u8>| char::from(*b?).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| malformed("form field is not valid UTF-8"))
}

fn parse_json(bytes: &[u8]) -> Result<Vec<(String, String)>, PushError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("body is not valid UTF-8"))?;
    serde_json::from_str::<FlatObject>(text)
        .map(|o| o.0)
        // serde quotes a value of the wrong type whole: a 60 KB string would be the answer.
        .map_err(|e| {
            malformed(format!(
                "body is not a flat JSON object: {}",
                clip(&e.to_string(), MAX_PARSER_MESSAGE)
            ))
        })
}

/// A JSON object of string or number values; numbers keep their exact text, since that
/// text is what the platform signed.
struct FlatObject(Vec<(String, String)>);

impl<'de> Deserialize<'de> for FlatObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FlatVisitor)
    }
}

struct FlatVisitor;

impl<'de> Visitor<'de> for FlatVisitor {
    type Value = FlatObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string or number values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlatObject, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.len() >= MAX_FIELDS {
                return Err(de::Error::custom(format!("more than {MAX_FIELDS} fields")));
            }
            let raw: Box<RawValue> = map.next_value()?;
            let text = raw.get();
            let value = match text.as_bytes().first() {
                Some(b'"') => serde_json::from_str::<String>(text).map_err(de::Error::custom)?,
                Some(b'-' | b'0'..=b'9') => text.to_owned(),
                _ => {
                    return Err(de::Error::custom(format!(
                        "field {} must be a string or a number",
                        shown(&key)
                    )))
                }
            };
            out.push((key, value));
        }
        Ok(FlatObject(out))
    }
}
