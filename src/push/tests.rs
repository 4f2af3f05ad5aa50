use super::*;
use crate::settings::Settings;

const KEY: &str = "k3y-0123456789abcdef";

fn merchants() -> Merchants {
    Settings::from_toml(
        "[[merchants]]\nappid = \"100023\"\nsign_key = \"k3y-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"s-0123456789abcdef\"\nuid = \"1404376560\"\n",
    )
    .unwrap()
    .merchants
}

fn signed_form(data: &str, ts: i64) -> String {
    let ts = ts.to_string();
    let params = [
        ("appid", "100023"),
        ("type", "2"),
        ("data", data),
        ("timestamp", ts.as_str()),
        ("sign_type", "md5"),
    ];
    let sign = signature::sign(params, KEY);
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    body.push(format!("sign={sign}"));
    body.join("&")
}

fn parse(kind: ContentKind, body: &str) -> Result<UnverifiedPush, PushError> {
    UnverifiedPush::parse(Body::parse(kind, body.as_bytes())?)
}

#[test]
fn event_id_matches_the_spec_vector() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../fixtures/signature-vectors.json")).unwrap();
    for v in vectors["event_id"].as_array().unwrap() {
        let s = |k: &str| v[k].as_str().unwrap();
        assert_eq!(
            EventId::derive(s("appid"), s("type"), s("data")).to_string(),
            s("event_id")
        );
    }
}

#[test]
fn a_signed_push_verifies_and_derives_its_route() {
    let data =
        r#"{"sub_order_id":366383890000352,"state_code":"201","contact_phone":"13812345678"}"#;
    let push = parse(ContentKind::Form, &signed_form(data, 1_700_000_000)).unwrap();
    let push = push
        .verify(
            &merchants(),
            1_700_000_100,
            std::time::Duration::from_secs(300),
        )
        .unwrap();
    assert_eq!(push.routing_key(), "order.sub_order.201");
    assert_eq!(push.sub_order_id().as_deref(), Some("366383890000352"));
    assert_eq!(
        push.masked_data_field("contact_phone").as_deref(),
        Some("138******78")
    );
    assert_eq!(push.event_id(), EventId::derive("100023", "2", data));
}

#[test]
fn the_window_is_inclusive_and_symmetric() {
    let body = signed_form("{}", 1_700_000_000);
    for (now, ok) in [
        (1_700_000_300, true),
        (1_699_999_700, true),
        (1_700_000_301, false),
        (1_699_999_699, false),
    ] {
        let r = parse(ContentKind::Form, &body).unwrap().verify(
            &merchants(),
            now,
            std::time::Duration::from_secs(300),
        );
        assert_eq!(r.is_ok(), ok, "now={now}");
    }
}

#[test]
fn odd_state_codes_never_add_routing_words() {
    for (state, key) in [
        (r#""a.b""#, "none"),
        ("null", "none"),
        (r#""""#, "none"),
        ("[1]", "none"),
        ("true", "none"),
        ("201.5", "none"),
        ("1e2", "none"),
        ("-3", "-3"),
    ] {
        let data = format!(r#"{{"state_code":{state}}}"#);
        let push = parse(ContentKind::Form, &signed_form(&data, 1_700_000_000)).unwrap();
        let push = push
            .verify(
                &merchants(),
                1_700_000_000,
                std::time::Duration::from_secs(300),
            )
            .unwrap();
        assert_eq!(push.routing_key(), format!("order.sub_order.{key}"));
    }
}

#[test]
fn form_decoding_handles_plus_percent_and_bare_keys() {
    let body = Body::parse(ContentKind::Form, b"a=x+y%2Bz&b&&c=%E5%BA%93").unwrap();
    let f = body.into_fields();
    assert_eq!(f["a"], "x y+z");
    assert_eq!(f["b"], "");
    assert_eq!(f["c"], "库");
}

#[test]
fn content_types() {
    assert_eq!(
        ContentKind::from_header(Some("application/json")).unwrap(),
        ContentKind::Json
    );
    assert_eq!(
        ContentKind::from_header(Some("Application/X-WWW-Form-Urlencoded; Charset=\"UTF-8\""))
            .unwrap(),
        ContentKind::Form
    );
    assert!(ContentKind::from_header(Some("multipart/form-data")).is_err());
    assert!(ContentKind::from_header(None).is_err());
}

#[test]
fn json_numbers_keep_their_text() {
    let body = Body::parse(
        ContentKind::Json,
        br#"{"a":1.50,"b":-0,"c":"x","d":12345678901234567890123}"#,
    )
    .unwrap();
    let f = body.into_fields();
    assert_eq!(f["a"], "1.50");
    assert_eq!(f["b"], "-0");
    assert_eq!(f["c"], "x");
    assert_eq!(f["d"], "12345678901234567890123");
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        ("", "missing appid"),
        ("appid=1", "missing type"),
        ("appid=1&type=2&data=%7B%7D&timestamp=1", "missing sign"),
        ("appid=a%20b&type=2", "appid is not a valid appid"),
        ("appid=1&type=2.0", "type is not an integer"),
    ];
    for (body, reason) in cases {
        let err = parse(ContentKind::Form, body).unwrap_err();
        assert!(err.to_string().contains(reason), "{body}: {err}");
    }
    let many: String = (0..65).map(|i| format!("k{i}=v&")).collect();
    assert!(parse(ContentKind::Form, &many)
        .unwrap_err()
        .to_string()
        .contains("more than 64 fields"));
}

/// A form body of these fields, every byte percent-encoded as needed.
fn form_of(fields: &[(String, String)]) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A push as the platform might sign it in `form`, with an empty `remark` the two forms treat
/// differently.
fn platform_push(data: &str, form: signature::Form) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = [
        ("appid", "100023"),
        ("type", "2"),
        ("data", data),
        ("timestamp", "1700000000"),
        ("nonce", "8f3a1c0d"),
        ("remark", ""),
        ("sign_type", "md5"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let sign = signature::sign_in(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        KEY,
        form,
    );
    fields.push(("sign".into(), sign));
    fields
}

fn verified(fields: &[(String, String)]) -> Result<VerifiedPush, PushError> {
    parse(ContentKind::Form, &form_of(fields))?.verify(
        &merchants(),
        1_700_000_000,
        std::time::Duration::from_secs(300),
    )
}

/// What a replayer can do without the key: pad values, add fields the signature skips.
#[derive(Debug, Clone)]
enum Tamper {
    Pad {
        field: usize,
        before: String,
        after: String,
    },
    Extra {
        key: String,
        value: String,
    },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let pad = "[ \t\r\n\u{0}\u{b}]{0,3}";
    prop_oneof![
        (0usize..8, pad, pad).prop_map(|(field, before, after)| Tamper::Pad {
            field,
            before,
            after
        }),
        ("(access_token|sign_type|[a-z_]{1,8})", "(|[ -~]{1,12})")
            .prop_map(|(key, value)| Tamper::Extra { key, value }),
    ]
}

use proptest::prelude::*;

proptest! {
    #[test]
    fn padding_or_unsigned_fields_never_change_what_is_published(
        php in any::<bool>(),
        tampers in proptest::collection::vec(tamper(), 1..4),
    ) {
        let form = if php { signature::Form::Trimmed } else { signature::Form::Raw };
        let data = r#"{"sub_order_id":"366383890000352","state_code":201}"#;
        let original = platform_push(data, form);
        let first = verified(&original).unwrap();
        let mut replay = original.clone();
        for t in &tampers {
            match t {
                Tamper::Pad { field, before, after } => {
                    let i = field % replay.len();
                    replay[i].1 = format!("{before}{}{after}", replay[i].1);
                }
                Tamper::Extra { key, value } => {
                    if let Some(slot) = replay.iter_mut().find(|(k, _)| k == key) {
                        slot.1.clone_from(value);
                    } else {
                        replay.push((key.clone(), value.clone()));
                    }
                }
            }
        }
        if let Ok(again) = verified(&replay) {
            prop_assert_eq!(again.event_id(), first.event_id());
            prop_assert_eq!(&again.params, &first.params);
            prop_assert_eq!(again.routing_key(), first.routing_key());
        }
    }
}

#[test]
fn published_params_are_exactly_the_signed_pairs() {
    let data = r#"{"sub_order_id":"1","state_code":201}"#;
    let php = verified(&platform_push(data, signature::Form::Trimmed)).unwrap();
    // The trimmed form does not sign the empty remark, so it is not published.
    let keys: Vec<&str> = php.params.keys().map(String::as_str).collect();
    assert_eq!(keys, ["appid", "data", "nonce", "timestamp", "type"]);
    assert_eq!(php.form(), signature::Form::Trimmed);
    let raw = verified(&platform_push(data, signature::Form::Raw)).unwrap();
    assert_eq!(raw.form(), signature::Form::Raw);
    assert_eq!(raw.params["remark"], "");
    assert_eq!(raw.event_id(), php.event_id());

    // A padded replay with an attacker's access_token: same id, nothing of the attacker's.
    let mut replay = platform_push(data, signature::Form::Trimmed);
    replay[2].1 = format!("{data}  \n");
    replay.push(("access_token".into(), "2.00attacker".into()));
    replay.push(("empty".into(), String::new()));
    let again = verified(&replay).unwrap();
    assert_eq!(again.event_id(), php.event_id());
    assert_eq!(again.params, php.params);
    assert!(!again
        .envelope(std::time::SystemTime::UNIX_EPOCH)
        .windows(8)
        .any(|w| w == b"attacker"));
}

#[test]
fn the_largest_envelope_a_body_can_become_is_within_what_log_readers_accept() {
    // Raw control characters (six bytes each once JSON-escaped) and numbers that grow when
    // re-written: as bad as a body gets.
    let data = format!("[{}1]", "1E15,".repeat(4000));
    let remark = "\u{1}".repeat(20_000);
    let ts = "1700000000";
    let params = [
        ("appid", "100023"),
        ("type", "2"),
        ("data", data.as_str()),
        ("remark", remark.as_str()),
        ("timestamp", ts),
        ("sign_type", "md5"),
    ];
    let sign = signature::sign(params, KEY);
    let mut body: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    body.push(format!("sign={sign}"));
    let body = body.join("&");
    let push = parse(ContentKind::Form, &body)
        .unwrap()
        .verify(
            &merchants(),
            1_700_000_000,
            std::time::Duration::from_secs(300),
        )
        .unwrap();
    let envelope = push.envelope(std::time::SystemTime::UNIX_EPOCH);
    assert!(
        envelope.len() > 5 * body.len(),
        "{} of {}",
        envelope.len(),
        body.len()
    );
    assert!(envelope.len() <= crate::event::max_envelope_bytes(body.len()));
}

proptest! {
    /// The one-pass form decoder reads every value as `+`-to-space then `percent_decode` did,
    /// malformed escapes and invalid UTF-8 included.
    #[test]
    fn form_values_decode_as_percent_decoding_did(raw in "([a-zA-Z0-9+ ]|%|%[0-9a-fA-F]{1,2}|%[c-f][0-9a-f]|%[89ab][0-9a-f]){0,12}") {
        let spaced: Vec<u8> = raw.bytes().map(|b| if b == b'+' { b' ' } else { b }).collect();
        let expected = percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .ok();
        let body = format!("k={raw}");
        let decoded = Body::parse(ContentKind::Form, body.as_bytes())
            .ok()
            .map(|b| b.into_fields()["k"].clone());
        prop_assert_eq!(decoded, expected);
    }
}
