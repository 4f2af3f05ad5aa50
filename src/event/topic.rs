//! Routing-key patterns as a topic binding reads them: words split on `.`, `*` one word,
//! `#` zero or more words.

use std::fmt;
use std::str::FromStr;

/// The longest pattern taken: a routing key is at most 255 bytes (an AMQP short string).
const MAX_PATTERN_BYTES: usize = 255;

/// A topic binding pattern, such as `order.sub_order.*` or `order.#.301`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty.
    #[error("a routing-key pattern cannot be empty")]
    Empty,
    /// Longer than a routing key can be.
    #[error("a routing-key pattern is at most {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    /// A control character.
    #[error("a routing-key pattern cannot hold control characters")]
    Control,
}

impl FromStr for TopicPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err(PatternError::Empty)
        } else if s.len() > MAX_PATTERN_BYTES {
            Err(PatternError::TooLong)
        } else if s.chars().any(char::is_control) {
            Err(PatternError::Control)
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TopicPattern {
    /// Whether `routing_key` matches, as RabbitMQ's topic exchange decides.
    pub fn matches(&self, routing_key: &str) -> bool {
        let pattern: Vec<&str> = self.0.split('.').collect();
        let key: Vec<&str> = routing_key.split('.').collect();
        // reachable[j]: the pattern's words so far can match the key's first j words.
        let mut reachable = vec![false; key.len() + 1];
        reachable[0] = true;
        for word in pattern {
            let mut next = vec![false; key.len() + 1];
            for j in 0..=key.len() {
                if !reachable[j] {
                    continue;
                }
                match word {
                    "#" => next[j..].iter_mut().for_each(|r| *r = true),
                    "*" => {
                        if let Some(r) = next.get_mut(j + 1) {
                            *r = true;
                        }
                    }
                    literal => {
                        if key.get(j) == Some(&literal) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            reachable = next;
        }
        reachable[key.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        pattern.parse::<TopicPattern>().unwrap().matches(key)
    }

    #[test]
    fn stars_take_one_word_and_hashes_any_number() {
        assert!(matches("order.sub_order.201", "order.sub_order.201"));
        assert!(!matches("order.sub_order.201", "order.sub_order.301"));
        assert!(matches("order.sub_order.*", "order.sub_order.301"));
        assert!(!matches("order.*", "order.sub_order.301"));
        assert!(!matches("order.*.*", "order.sub_order"));
        assert!(matches("order.#", "order.sub_order.301"));
        assert!(matches("order.#", "order"));
        assert!(matches("#", "order.type_7.none"));
        assert!(matches("#.301", "order.sub_order.301"));
        assert!(matches("order.#.301", "order.301"));
        assert!(!matches("order.#.301", "order.sub_order.302"));
        assert!(matches("*.*.201", "order.sub_order.201"));
        assert!(!matches("order.sub_order", "order.sub_order.201"));
        assert!(!matches("order.sub_order.20*", "order.sub_order.201"));
    }

    #[test]
    fn patterns_are_bounded_and_printable() {
        assert_eq!("".parse::<TopicPattern>(), Err(PatternError::Empty));
        assert_eq!(
            "a".repeat(256).parse::<TopicPattern>(),
            Err(PatternError::TooLong)
        );
        assert_eq!(
            "order.\u{1b}[31m".parse::<TopicPattern>(),
            Err(PatternError::Control)
        );
    }
}
