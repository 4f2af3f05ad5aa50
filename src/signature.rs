//! The e-commerce md5 signature (platform spec section 2) and the token request signature
//! (section 3).

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// What the platform's reference `trim()` strips from both ends of a value.
const TRIMMED: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0B'];

/// Parameters that never take part in the signature.
const UNSIGNED: [&str; 3] = ["sign", "sign_type", "access_token"];

/// The exact text that is md5-hashed: sorted `k=v` pairs joined by `&`, then the key.
pub fn string_to_sign<'a, I>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !UNSIGNED.contains(k) && !v.is_empty())
        .map(|(k, v)| (k, v.trim_matches(TRIMMED)))
        .collect();
    // Byte order, as the platform's ksort/Arrays.sort do for ASCII keys.
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.push_str(key);
    out
}

/// The lowercase hex md5 signature of `params` under `key`.
pub fn sign<'a, I>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    md5_hex(&string_to_sign(params, key))
}

/// True when `provided` (hex, either case) is the signature of `params` under `key`.
/// The comparison takes the same time wherever the first difference is.
pub fn verify<'a, I>(params: I, key: &str, provided: &str) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let expected = sign(params, key);
    let provided = provided.to_ascii_lowercase();
    expected.as_bytes().ct_eq(provided.as_bytes()).into()
}

/// `md5(client_id&uid&timestamp&nonce&client_secret)` for `oauth2/shop/authorize`.
pub fn token_sign(
    client_id: &str,
    uid: &str,
    timestamp: &str,
    nonce: &str,
    secret: &str,
) -> String {
    md5_hex(&format!("{client_id}&{uid}&{timestamp}&{nonce}&{secret}"))
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests;
