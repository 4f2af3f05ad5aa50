//! Who calls: a bearer key, hashed and compared in constant time with every configured
//! client's hash; and each client's own rate.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use crate::settings::{GatewayClient, KeyHash};

/// The configured clients and their rate limiters.
pub struct Clients {
    known: Vec<(GatewayClient, DefaultDirectRateLimiter)>,
}

impl Clients {
    /// One rate limiter per client: its `rate_limit_per_sec`, a burst of as many.
    pub fn new(clients: &[GatewayClient]) -> Self {
        let known = clients
            .iter()
            .map(|c| {
                let rate =
                    NonZeroU32::new(c.rate_limit_per_sec.as_u32()).unwrap_or(NonZeroU32::MIN);
                (c.clone(), RateLimiter::direct(Quota::per_second(rate)))
            })
            .collect();
        Self { known }
    }

    /// The client whose key is `key`. Every hash is compared, each in constant time, so the
    /// time taken says nothing about which (or whether one) matched.
    pub fn authenticate(&self, key: &str) -> Option<&GatewayClient> {
        let hash = KeyHash::of(key);
        let mut found = None;
        for (client, _) in &self.known {
            let same: bool = client.key_sha256.bytes().ct_eq(hash.bytes()).into();
            if same {
                found = Some(client);
            }
        }
        found
    }

    /// True when `client` may make one more call now.
    pub fn admit(&self, client: &GatewayClient) -> bool {
        self.known
            .iter()
            .find(|(c, _)| c.name == client.name)
            .is_some_and(|(_, limiter)| limiter.check().is_ok())
    }
}

/// The key of an `Authorization: Bearer <key>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, key: &str, rate: u64) -> GatewayClient {
        GatewayClient {
            merchants: false,
            name: name.into(),
            key_sha256: KeyHash::of(key),
            interfaces: vec!["*".into()],
            appids: vec!["*".into()],
            rate_limit_per_sec: rate.try_into().unwrap(),
        }
    }

    #[test]
    fn a_key_names_its_client_and_each_client_has_its_own_rate() {
        let clients = Clients::new(&[client("a", "key-a", 2), client("b", "key-b", 2)]);
        let a = clients.authenticate("key-a").unwrap();
        assert_eq!(a.name, "a");
        assert!(clients.authenticate("key-c").is_none());
        assert!(clients.admit(a) && clients.admit(a) && !clients.admit(a));
        let b = clients.authenticate("key-b").unwrap();
        assert!(clients.admit(b), "a's flood is a's alone");
    }

    #[test]
    fn only_a_bearer_header_carries_a_key() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
