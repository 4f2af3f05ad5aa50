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

fn params_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{1,12}", 1..8).prop_map(|m| {
        m.into_iter()
            .filter(|(k, v)| !UNSIGNED.contains(&k.as_str()) && !v.trim_matches(TRIMMED).is_empty())
            .map(|(k, v)| (k, v.trim_matches(TRIMMED).to_owned()))
            .collect()
    })
}

proptest! {
    #[test]
    fn round_trip_in_any_order(p in params_strategy(), key in "[ -~]{1,16}", seed in any::<u64>()) {
        let sig = sign(pairs(&p), &key);
        let mut shuffled = p.clone();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
        }
        prop_assert!(verify(pairs(&shuffled), &key, &sig));
    }

    #[test]
    fn any_changed_value_or_key_fails(p in params_strategy(), key in "[ -~]{1,16}", which in any::<prop::sample::Index>()) {
        prop_assume!(!p.is_empty());
        let sig = sign(pairs(&p), &key);
        let i = which.index(p.len());
        let mut changed = p.clone();
        changed[i].1.push('x');
        prop_assert!(!verify(pairs(&changed), &key, &sig));
        let mut renamed = p.clone();
        renamed[i].0.push('z');
        prop_assume!(!p.iter().any(|(k, _)| *k == renamed[i].0));
        prop_assert!(!verify(pairs(&renamed), &key, &sig));
        let mut other_key = key.clone();
        other_key.push('x');
        prop_assert!(!verify(pairs(&p), &other_key, &sig));
    }
}
