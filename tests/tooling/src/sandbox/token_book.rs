//! The sandbox's token book: each issue supersedes the merchant's previous token.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;

use rand::distr::{Alphanumeric, SampleString};

/// access_token expired.
pub const EXPIRED: i64 = 21327;
/// access_token invalid (unknown, superseded or revoked).
pub const INVALID: i64 = 21332;

struct Issued {
    appid: String,
    expires_at: Instant,
    /// Set when superseded or revoked: the code a call with it gets.
    revoked: Option<i64>,
}

/// Tokens issued so far and which one is current per merchant.
pub struct TokenBook {
    ttl: Duration,
    tokens: HashMap<String, Issued>,
    current: HashMap<String, String>,
    issued: HashMap<String, u64>,
}

impl TokenBook {
    /// Tokens living `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: HashMap::new(),
            current: HashMap::new(),
            issued: HashMap::new(),
        }
    }

    /// Every token issued and not yet forgotten (for tests that search for them).
    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.tokens.keys()
    }

    /// A new token for `appid`, superseding its previous one. Returns it and its life.
    pub fn issue(&mut self, appid: &str, now: Instant) -> (String, Duration) {
        if let Some(previous) = self.current.get(appid) {
            if let Some(t) = self.tokens.get_mut(previous) {
                t.revoked.get_or_insert(INVALID);
            }
        }
        // Forget tokens long dead, so a long-running sandbox does not grow without bound.
        let ttl = self.ttl;
        self.tokens.retain(|_, t| t.expires_at.later(ttl) > now);
        let value = format!("2.00{}", Alphanumeric.sample_string(&mut rand::rng(), 30));
        self.tokens.insert(
            value.clone(),
            Issued {
                appid: appid.to_owned(),
                expires_at: now.later(self.ttl),
                revoked: None,
            },
        );
        self.current.insert(appid.to_owned(), value.clone());
        *self.issued.entry(appid.to_owned()).or_default() += 1;
        (value, self.ttl)
    }

    /// `Ok` when `value` is `appid`'s current, live token; else 21327 or 21332.
    pub fn check(&self, appid: &str, value: &str, now: Instant) -> Result<(), i64> {
        let token = self.tokens.get(value).ok_or(INVALID)?;
        if token.appid != appid {
            return Err(INVALID);
        }
        if let Some(code) = token.revoked {
            return Err(code);
        }
        if now >= token.expires_at {
            return Err(EXPIRED);
        }
        Ok(())
    }

    /// Makes the current token of `appid` (or of every merchant) answer `code` from now on.
    pub fn revoke(&mut self, appid: Option<&str>, code: i64) -> usize {
        let mut revoked = 0;
        for (owner, value) in &self.current {
            if appid.is_none_or(|a| a == owner) {
                if let Some(t) = self.tokens.get_mut(value) {
                    if t.revoked.is_none() {
                        t.revoked = Some(code);
                        revoked += 1;
                    }
                }
            }
        }
        revoked
    }

    /// Tokens issued per merchant.
    pub fn issued(&self) -> &HashMap<String, u64> {
        &self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_supersedes_and_expires() {
        let mut book = TokenBook::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let (first, _) = book.issue("a", t0);
        assert_eq!(book.check("a", &first, t0), Ok(()));
        assert_eq!(book.check("b", &first, t0), Err(INVALID));
        assert_eq!(book.check("a", "2.00nope", t0), Err(INVALID));
        let (second, _) = book.issue("a", t0);
        assert_eq!(book.check("a", &first, t0), Err(INVALID));
        assert_eq!(book.check("a", &second, t0), Ok(()));
        assert_eq!(
            book.check("a", &second, t0 + Duration::from_secs(10)),
            Err(EXPIRED)
        );
        assert_eq!(book.revoke(None, EXPIRED), 1);
        assert_eq!(book.check("a", &second, t0), Err(EXPIRED));
        assert_eq!(book.issued()["a"], 2);
    }
}
