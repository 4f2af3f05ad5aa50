//! `[weibo.codes]`: what each platform code means. One key per meaning, each a list of codes;
//! any code in no list is permanent. A new meaning is a variant of [`CodeMeaning`] (its key is
//! the variant's name in snake_case) and its line in `defaults.toml`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::ids::StringOrNumber;
use crate::metrics::Label;

/// What a configured code means: the key of `[weibo.codes]` that lists it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub enum CodeMeaning {
    /// The access_token was rejected: refresh it once, retry.
    TokenRejected,
    /// Try again later (system errors, rate limits).
    Transient,
    /// The sub order is already finished: success for `finish`, permanent for `close`.
    AlreadyFinished,
    /// The sub order is already closed: success for `close`, permanent for `finish`.
    AlreadyClosed,
}

impl CodeMeaning {
    /// The dotted key of its list, such as `weibo.codes.transient`.
    pub fn key(self) -> String {
        format!("weibo.codes.{}", self.as_str())
    }
}

/// The configured table: each listed code and its meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeTable {
    meanings: HashMap<i64, CodeMeaning>,
    /// The lists as given, for writing them back and for [`check`](Self::check).
    lists: BTreeMap<CodeMeaning, Vec<i64>>,
}

impl CodeTable {
    /// What `code` means; `None` for a code in no list (permanent).
    pub fn meaning(&self, code: i64) -> Option<CodeMeaning> {
        self.meanings.get(&code).copied()
    }

    /// The codes listed for `meaning`, in the order given.
    pub fn codes(&self, meaning: CodeMeaning) -> &[i64] {
        self.lists.get(&meaning).map_or(&[], Vec::as_slice)
    }

    /// A code listed under two meanings is ambiguous: the key of the later list and why.
    /// (Checked once the whole table is read: the lists arrive in no particular order.)
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let mut seen: HashMap<i64, CodeMeaning> = HashMap::new();
        for (meaning, codes) in &self.lists {
            for code in codes {
                if let Some(first) = seen.insert(*code, *meaning) {
                    return Err((
                        meaning.key(),
                        format!("{code} is also listed in {}", first.key()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A map from meaning to its list. A list given in a file replaces its default; from the
/// environment a list is a comma-separated text, or one code alone (which reaches us as a
/// number). A code listed twice in one list is refused, as is 0 (success); one listed in two
/// meanings, by [`CodeTable::check`].
impl<'de> Deserialize<'de> for CodeTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TableVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = CodeTable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of code lists by meaning")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CodeTable, A::Error> {
        let mut table = CodeTable::default();
        while let Some(key) = map.next_key::<String>()? {
            let meaning: CodeMeaning = key.parse().map_err(|_| {
                let known: Vec<&str> = CodeMeaning::all().map(CodeMeaning::as_str).collect();
                de::Error::custom(format_args!(
                    "unknown field `{key}`, expected one of `{}`",
                    known.join("`, `")
                ))
            })?;
            // Checked while the list is read, so a refusal names this list's key.
            let list = table.lists.entry(meaning).or_default();
            list.clear();
            map.next_value_seed(List(list))?;
        }
        // The first meaning (in declaration order) of a code listed twice; `check` refuses it.
        for (meaning, codes) in table.lists.iter().rev() {
            for code in codes {
                table.meanings.insert(*code, *meaning);
            }
        }
        Ok(table)
    }
}

/// One meaning's list, read into place.
struct List<'t>(&'t mut Vec<i64>);

impl List<'_> {
    fn add<E: de::Error>(&mut self, code: StringOrNumber) -> Result<(), E> {
        let text = code.into_text();
        let code: i64 = text
            .trim()
            .parse()
            .map_err(|_| E::custom(format_args!("{text:?} is not a code")))?;
        if code == 0 {
            return Err(E::custom("0 means success and cannot be listed"));
        }
        if self.0.contains(&code) {
            return Err(E::custom(format_args!("{code} is listed twice")));
        }
        self.0.push(code);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of codes")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(code) = seq.next_element::<StringOrNumber>()? {
            self.add(code)?;
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.add(StringOrNumber::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.add(StringOrNumber::Number(v.into()))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.add(StringOrNumber::Text(v.to_owned()))
    }
}

/// Every meaning with its list (empty ones too), in declaration order.
impl Serialize for CodeTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for meaning in CodeMeaning::all() {
            map.serialize_entry(meaning.as_str(), self.codes(meaning))?;
        }
        map.end()
    }
}
