use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../fixtures/signature-vectors.json")).unwrap()
}

fn params(v: &Value) -> Vec<(String, String)> {
    v["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(p: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> + Clone {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

#[test]
fn every_ecommerce_vector_signs_and_verifies() {
    let all = vectors();
    let list = all["ecommerce"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    for v in list {
        let p = params(v);
        let key = v["key"].as_str().unwrap();
        let name = v["name"].as_str().unwrap();
        assert_eq!(
            string_to_sign(pairs(&p), key),
            v["string_to_sign"],
            "{name}"
        );
        assert_eq!(sign(pairs(&p), key), v["sign"], "{name}");
        let sig = v["sign"].as_str().unwrap();
        assert!(verify(pairs(&p), key, sig), "{name}");
        assert!(verify(pairs(&p), key, &sig.to_uppercase()), "{name}");
        assert!(!verify(pairs(&p), "other", sig), "{name}");
    }
}

#[test]
fn token_vector_signs() {
    let all = vectors();
    for v in all["token"].as_array().unwrap() {
        let s = |k: &str| v[k].as_str().unwrap();
        assert_eq!(
            token_sign(
                s("client_id"),
                s("uid"),
                s("timestamp"),
                s("nonce"),
                s("client_secret")
            ),
            s("sign")
        );
    }
}

#[test]
fn malformed_signatures_do_not_verify() {
    let p = [("appid", "1")];
    let good = sign(p, "k");
    assert!(!verify(p, "k", ""));
    assert!(!verify(p, "k", &good[..31]));
    assert!(!verify(p, "k", &format!("{good}0")));
    assert!(!verify(p, "k", "not hex at all, 32 characters!!"));
}

/// The Java/Go form, by the seed's reference code: empty values kept, nothing trimmed.
#[test]
fn raw_form_vectors_sign_and_verify_in_that_form_only() {
    /// Parameters, key, the string signed, the signature.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
    let cases: [Case; 3] = [
        (
            &[
                ("appid", "100023"),
                ("sub_order_id", "4200000001"),
                ("access_token", "2.00lnqNgH0YhE_q6594efd4abyzYM7E"),
                ("remark", ""),
                ("timestamp", "1700000000"),
                ("sign_type", "md5"),
            ],
            "k3y",
            "appid=100023&remark=&sub_order_id=4200000001&timestamp=1700000000k3y",
            "967c775d88b68e748a665906b59d279c",
        ),
        (
            &[
                ("appid", "100023"),
                ("reason", "  out of stock  "),
                ("sub_order_id", "42"),
            ],
            "k3y",
            "appid=100023&reason=  out of stock  &sub_order_id=42k3y",
            "24dd11d3574362a769cfb14ac5b851ec",
        ),
        (
            &[
                ("goods_id", "371965"),
                ("appid", "100023"),
                ("sign_type", "md5"),
            ],
            "YOUR SIGN KEY",
            "appid=100023&goods_id=371965YOUR SIGN KEY",
            "acd244ced696e4aaf1174bc7242969a5",
        ),
    ];
    for (params, key, string, sig) in cases {
        let p = params.iter().copied();
        assert_eq!(string_to_sign_in(p.clone(), key, Form::Raw), string);
        assert_eq!(sign_in(p.clone(), key, Form::Raw), sig);
        let expected_form = if string_to_sign_in(p.clone(), key, Form::Trimmed) == string {
            Form::Trimmed // where both forms build the same string, the PHP form is tried first
        } else {
            Form::Raw
        };
        assert_eq!(verify_form(p.clone(), key, sig), Some(expected_form));
        assert_eq!(
            verify_form(p.clone(), key, &sig.to_uppercase()),
            Some(expected_form)
        );
        assert_eq!(verify_form(p, "other", sig), None);
    }
}

/// Any parameters, padding, empty values and unsigned keys included.
fn params_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map(
        "(access_token|sign_type|[a-z_]{1,8})",
        "[ \t]{0,2}[ -~]{0,10}[ \t]{0,2}",
        1..8,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::Trimmed), Just(Form::Raw)]
}

proptest! {
    #[test]
    fn round_trip_in_any_order(p in params_strategy(), key in "[ -~]{1,16}", form in form(), seed in any::<u64>()) {
        let sig = sign_in(pairs(&p), &key, form);
        let mut shuffled = p.clone();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
        }
        prop_assert!(verify(pairs(&shuffled), &key, &sig));
    }

    /// A change to a value, a key or the sign key fails in both forms, whichever signed it:
    /// the only edits that still verify are the ones the signature does not cover.
    #[test]
    fn any_signed_change_fails_in_both_forms(
        p in params_strategy(),
        key in "[ -~]{1,16}",
        form in form(),
        which in any::<prop::sample::Index>(),
    ) {
        let signed: Vec<(String, String)> = signed_pairs(pairs(&p), form)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        prop_assume!(!signed.is_empty());
        let sig = sign_in(pairs(&p), &key, form);
        let (k, _) = &signed[which.index(signed.len())];
        let i = p.iter().position(|(pk, _)| pk == k).unwrap();
        let mut changed = p.clone();
        changed[i].1.push('x');
        prop_assert!(verify_form(pairs(&changed), &key, &sig).is_none());
        let mut renamed = p.clone();
        renamed[i].0.push('z');
        prop_assume!(!p.iter().any(|(k, _)| *k == renamed[i].0));
        prop_assert!(verify_form(pairs(&renamed), &key, &sig).is_none());
        let mut other_key = key.clone();
        other_key.push('x');
        prop_assert!(verify_form(pairs(&p), &other_key, &sig).is_none());
    }
}
