//! The e-commerce md5 signature (platform spec section 2) and the token request signature
//! (section 3).
//!
//! The platform's reference code signs in two ways that agree only on simple inputs: its PHP
//! `getSign` drops empty values and trims every value ([`Form::Trimmed`]); its Java and Go
//! `getSign` keep empty values and sign them as they are ([`Form::Raw`]). A verifier accepts
//! either; the relay signs its own calls with the PHP form.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// What the platform's reference `trim()` strips from both ends of a value.
const TRIMMED: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0B'];

/// Parameters that never take part in the signature, in either form.
pub const UNSIGNED: [&str; 3] = ["sign", "sign_type", "access_token"];

/// One of the two canonical strings the platform's reference code builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// PHP `getSign`: empty values skipped, values trimmed. The form the relay signs with.
    Trimmed,
    /// Java/Go `getSign`: empty values kept, values as sent.
    Raw,
}

impl Form {
    /// The order a verifier tries them in.
    pub const ALL: [Form; 2] = [Form::Trimmed, Form::Raw];

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trimmed => "trimmed",
            Self::Raw => "raw",
        }
    }
}

/// The pairs `form` signs, each value as it enters the signed string, sorted by key in byte
/// order (as the platform's ksort/Arrays.sort do for ASCII keys).
pub fn signed_pairs<'a, I>(params: I, form: Form) -> Vec<(&'a str, &'a str)>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, _)| !UNSIGNED.contains(k))
        .filter_map(|(k, v)| match form {
            Form::Trimmed => (!v.is_empty()).then(|| (k, v.trim_matches(TRIMMED))),
            Form::Raw => Some((k, v)),
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

/// What [`signed_pairs`] keeps of `params`, by value: the strings move rather than being
/// copied, and a value trimming leaves alone is kept as it is.
pub fn into_signed(
    params: std::collections::BTreeMap<String, String>,
    form: Form,
) -> std::collections::BTreeMap<String, String> {
    params
        .into_iter()
        .filter(|(k, _)| !UNSIGNED.contains(&k.as_str()))
        .filter_map(|(k, v)| match form {
            Form::Trimmed if v.is_empty() => None,
            Form::Trimmed => {
                let trimmed = v.trim_matches(TRIMMED);
                let v = if trimmed.len() == v.len() {
                    v
                } else {
                    trimmed.to_owned()
                };
                Some((k, v))
            }
            Form::Raw => Some((k, v)),
        })
        .collect()
}

/// The exact text that is md5-hashed in `form`: sorted `k=v` pairs joined by `&`, then the key.
pub fn string_to_sign_in<'a, I>(params: I, key: &str, form: Form) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let pairs = signed_pairs(params, form);
    let mut out = String::with_capacity(
        pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
            + key.len(),
    );
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

/// The string the relay signs (the PHP form).
pub fn string_to_sign<'a, I>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    string_to_sign_in(params, key, Form::Trimmed)
}

/// The lowercase hex md5 signature of `params` under `key`, in the form the relay signs with.
pub fn sign<'a, I>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    md5_hex(&string_to_sign(params, key))
}

/// The lowercase hex md5 signature of `params` under `key` in `form`.
pub fn sign_in<'a, I>(params: I, key: &str, form: Form) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    md5_hex(&string_to_sign_in(params, key, form))
}

/// The form in which `provided` (hex, either case) signs `params` under `key`, trying the PHP
/// form first. Each comparison takes the same time wherever the first difference is.
pub fn verify_form<'a, I>(params: I, key: &str, provided: &str) -> Option<Form>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let provided = provided.to_ascii_lowercase();
    Form::ALL.into_iter().find(|&form| {
        let expected = sign_in(params.clone(), key, form);
        expected.as_bytes().ct_eq(provided.as_bytes()).into()
    })
}

/// True when `provided` signs `params` under `key` in either form.
pub fn verify<'a, I>(params: I, key: &str, provided: &str) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    verify_form(params, key, provided).is_some()
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
    crate::hexstr::lower(&Md5::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests;
