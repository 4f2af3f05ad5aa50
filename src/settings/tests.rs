use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const MERCHANT: &str = r#"
[[merchants]]
appid = 100023
sign_key = "k3y-0123456789abcdef"
client_id = "772915"
client_secret = "appsecret-0123456789"
uid = 1404376560
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.http.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(s.http.max_body_bytes.get(), 65536);
    assert_eq!(s.http.body_timeout_ms.get(), Duration::from_secs(5));
    assert_eq!(s.push.path, "/weibo/push");
    assert_eq!(s.push.max_skew_secs.get(), Duration::from_secs(300));
    assert_eq!(s.push.dedup_capacity.get(), 1_000_000);
    assert_eq!(s.amqp.events_exchange, "weibo.events");
    assert_eq!(s.amqp.events_queue, "weibo.orders");
    assert_eq!(s.amqp.fulfilment_queue, "weibo.fulfilment");
    assert_eq!(
        s.weibo.api_base.as_str(),
        "https://api.weibo.com/2/proxy/eshop/open"
    );
    assert_eq!(s.push.success_body, r#"{"code":0,"msg":"success"}"#);
    assert_eq!(s.push.success_content_type, "application/json");
    let codes = |meaning| s.weibo.codes.codes(meaning).to_vec();
    assert_eq!(
        codes(CodeMeaning::TokenRejected),
        [21327, 21332, 21314, 21315, 21316, 21317, 21319]
    );
    assert_eq!(
        codes(CodeMeaning::Transient),
        [10001, 10002, 10003, 10022, 10023, 10024, 21331]
    );
    assert_eq!(codes(CodeMeaning::AlreadyFinished), [70102]);
    assert_eq!(codes(CodeMeaning::AlreadyClosed), [70103]);
    assert_eq!(
        s.weibo.codes.meaning(21327),
        Some(CodeMeaning::TokenRejected)
    );
    assert_eq!(s.weibo.codes.meaning(40001), None);
    assert_eq!(s.weibo.oauth_base.as_str(), "https://api.weibo.com/");
    assert_eq!(s.weibo.timeout_ms.get(), Duration::from_secs(5));
    assert_eq!(s.weibo.max_attempts.get(), 8);
    assert_eq!(s.weibo.retry_base_ms.get(), Duration::from_secs(5));
    assert_eq!(s.weibo.retry_max_ms.get(), Duration::from_secs(600));
    assert_eq!(s.weibo.rate_limit_per_sec.get(), 50);
    assert_eq!(s.event_log.max_age.get(), Duration::from_secs(7 * 86_400));
    assert!(s.merchants.is_empty());
}

#[test]
fn numbers_become_strings_for_merchant_ids() {
    let s = Settings::from_toml(MERCHANT).unwrap();
    let m = s.merchants.get("100023").unwrap();
    assert_eq!(m.appid().as_str(), "100023");
    assert_eq!(m.uid(), "1404376560");
    assert_eq!(m.client_id(), "772915");
}

#[test]
fn environment_overrides_file_and_defaults() {
    let dir = std::env::temp_dir().join(format!("wr-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(&file, format!("[push]\nmax_skew_secs = 60\n{MERCHANT}")).unwrap();
    let s = Settings::load(
        Some(&file),
        env(&[
            ("WEIBO_RELAY__HTTP__BIND", "127.0.0.1:0"),
            ("WEIBO_RELAY__PUSH__DEDUP_CAPACITY", "10"),
            ("WEIBO_RELAY_LOG_FORMAT", "json"),
            ("WEIBO_RELAY_CONFIG", "/elsewhere.toml"),
        ]),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(s.http.bind.port(), 0);
    assert_eq!(s.push.dedup_capacity.get(), 10);
    assert_eq!(s.push.max_skew_secs.get(), Duration::from_secs(60));
    assert_eq!(s.merchants.len(), 1);
}

#[test]
fn unknown_keys_are_named() {
    let err = Settings::from_toml("[http]\nbindd = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("bindd"), "{err}");
    let err = Settings::from_toml("[nope]\na = 1\n").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = Settings::load(None, env(&[("WEIBO_RELAY__PUSH__COLOUR", "red")])).unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn missing_merchant_fields_are_named() {
    let err =
        Settings::from_toml("[[merchants]]\nappid = \"1\"\nsign_key = \"k3y-0123456789abcdef\"\n")
            .unwrap_err();
    assert!(err.to_string().contains("client_id"), "{err}");
    let err =
        Settings::from_toml(&MERCHANT.replace("\"k3y-0123456789abcdef\"", "\"\"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: merchants[0].sign_key: must be at least 16 bytes (got 0)"
    );
    let twice = format!("{MERCHANT}{MERCHANT}");
    let err = Settings::from_toml(&twice).unwrap_err();
    assert!(err.to_string().contains("configured twice"), "{err}");
}

#[test]
fn secrets_stay_out_of_debug() {
    let s = Settings::from_toml(MERCHANT).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("k3y-0123456789abcdef"), "{debug}");
    assert!(!debug.contains("appsecret-0123456789"), "{debug}");
    assert!(!debug.contains("guest:guest"), "{debug}");
    assert_eq!(
        s.amqp.redacted_url(),
        "amqp://guest:[redacted]@127.0.0.1:5672/%2f"
    );
}

#[test]
fn short_and_placeholder_secrets_are_refused_without_repeating_them() {
    for (field, value, why) in [
        ("sign_key", "k3y", "at least 16 bytes (got 3)"),
        ("sign_key", "0123456789abcde", "at least 16 bytes (got 15)"),
        (
            "sign_key",
            "replace-with-the-e-commerce-sign-key",
            "placeholder",
        ),
        ("sign_key", "REPLACE_ME_SIGN_KEY_0123", "placeholder"),
        (
            "client_secret",
            "your-client-secret-CHANGEME",
            "placeholder",
        ),
        ("client_secret", "an-example-secret-value", "placeholder"),
    ] {
        let original = match field {
            "sign_key" => "k3y-0123456789abcdef",
            _ => "appsecret-0123456789",
        };
        let toml = MERCHANT.replace(&format!("\"{original}\""), &format!("\"{value}\""));
        let err = Settings::from_toml(&toml).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid configuration: merchants[0].{field}: ")),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
        assert!(
            !err.contains(value),
            "the refusal repeats the secret: {err}"
        );
    }
    let amqp = format!("[amqp]\nurl = \"amqp://relay:REPLACE_ME@rabbitmq:5672/%2f\"\n{MERCHANT}");
    let err = Settings::from_toml(&amqp).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid configuration: amqp.url: "),
        "{err}"
    );
    assert!(!err.contains("REPLACE_ME"), "{err}");
}

#[test]
fn guest_guest_is_accepted_on_this_machine_only() {
    let with = |url: &str| Settings::from_toml(&format!("[amqp]\nurl = \"{url}\"\n{MERCHANT}"));
    for ok in [
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "amqp://guest:guest@localhost:5672/%2f",
        "amqp://guest:guest@[::1]:5672/%2f",
        "amqp://relay:guest-but-longer@rabbitmq:5672/%2f",
    ] {
        assert!(with(ok).is_ok(), "{ok}: {:?}", with(ok).err());
    }
    for refused in [
        "amqp://guest:guest@rabbitmq:5672/%2f",
        "amqps://guest:guest@10.0.0.5:5671/%2f",
    ] {
        let err = with(refused).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid configuration: amqp.url: guest/guest is RabbitMQ's default account"
            ),
            "{err}"
        );
    }
}

#[test]
fn the_platform_is_reached_over_https_or_loopback_only() {
    let with = |api: &str, insecure: bool| {
        Settings::from_toml(&format!(
            "[weibo]\napi_base = \"{api}\"\nallow_insecure_http = {insecure}\n{MERCHANT}"
        ))
    };
    for ok in [
        "https://api.weibo.com/2/proxy/eshop/open",
        "http://127.0.0.1:9090/2/eshop",
        "http://localhost:9090",
        "http://[::1]:9090",
    ] {
        assert!(with(ok, false).is_ok(), "{ok}");
    }
    for refused in [
        "http://api.weibo.com/2/eshop",
        "http://10.0.0.1/2/eshop",
        "ftp://api.weibo.com",
        "not a url",
    ] {
        let err = with(refused, false).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid configuration: weibo.api_base: "),
            "{err}"
        );
    }
    assert!(with("http://sandbox.internal:9090", true).is_ok());
    let err = Settings::from_toml(&format!(
        "[weibo]\noauth_base = \"http://evil.example\"\n{MERCHANT}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid configuration: weibo.oauth_base: must be https://"),
        "{err}"
    );
}

#[test]
fn a_code_list_replaces_its_default_from_a_file_or_the_environment() {
    let s = Settings::from_toml(&format!(
        "[weibo.codes]\ntransient = [10002, 99001]\n{MERCHANT}"
    ))
    .unwrap();
    assert_eq!(s.weibo.codes.codes(CodeMeaning::Transient), [10002, 99001]);
    assert_eq!(
        s.weibo.codes.codes(CodeMeaning::AlreadyFinished),
        [70102],
        "other lists keep theirs"
    );
    assert_eq!(s.weibo.codes.meaning(10001), None, "replaced, not added to");
    let s = Settings::load(
        None,
        env(&[
            ("WEIBO_RELAY__WEIBO__CODES__ALREADY_FINISHED", "70102,88888"),
            ("WEIBO_RELAY__WEIBO__CODES__TRANSIENT", "77777"),
            ("WEIBO_RELAY__PUSH__SUCCESS_BODY", "success"),
            ("WEIBO_RELAY__PUSH__SUCCESS_CONTENT_TYPE", "text/plain"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.weibo.codes.codes(CodeMeaning::AlreadyFinished),
        [70102, 88888]
    );
    assert_eq!(s.weibo.codes.codes(CodeMeaning::Transient), [77777]);
    assert_eq!(s.push.success_body, "success");
    assert_eq!(s.push.success_content_type, "text/plain");
}

#[test]
fn a_code_in_two_meanings_or_twice_is_refused_naming_the_key() {
    for (table, expected) in [
        (
            "transient = [21327]",
            "invalid configuration: weibo.codes.transient: 21327 is also listed in weibo.codes.token_rejected",
        ),
        (
            "already_closed = [70103, 70103]",
            "invalid configuration: weibo.codes.already_closed: 70103 is listed twice",
        ),
        (
            "already_finished = [0]",
            "invalid configuration: weibo.codes.already_finished: 0 means success and cannot be listed",
        ),
    ] {
        let err = Settings::from_toml(&format!("[weibo.codes]\n{table}\n{MERCHANT}"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, expected);
    }
    let err = Settings::from_toml(&format!("[weibo.codes]\ntransient = [\"x\"]\n{MERCHANT}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("transient"), "{err}");
    let err = Settings::from_toml(&format!(
        "[push]\nsuccess_content_type = \"a\\nb\"\n{MERCHANT}"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("push.success_content_type"), "{err}");
}

#[test]
fn a_broken_amqp_url_is_refused_without_repeating_it_and_heartbeats_default_to_5_s() {
    let err = Settings::from_toml(&format!(
        "[amqp]\nurl = \"amqp://relay:s3cret-pass@host:notaport/%2f\"\n{MERCHANT}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid configuration: amqp.url: "),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let s = Settings::from_toml(MERCHANT).unwrap();
    assert_eq!(s.amqp.endpoints()[0].uri.query.heartbeat, Some(5));
    let s = Settings::from_toml(&format!(
        "[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=30\"\n{MERCHANT}"
    ))
    .unwrap();
    assert_eq!(
        s.amqp.endpoints()[0].uri.query.heartbeat,
        Some(30),
        "the URL's own wins"
    );
}

#[test]
fn amqp_urls_replace_url_from_a_file_or_a_comma_list_and_each_is_checked() {
    let s = Settings::load(
        None,
        env(&[(
            "WEIBO_RELAY__AMQP__URLS",
            "amqp://relay:s3cret-pass-0123@rmq-0:5672/%2f,amqps://relay:s3cret-pass-0123@rmq-1:5671/%2f",
        )]),
    )
    .unwrap();
    let nodes: Vec<String> = s.amqp.endpoints().into_iter().map(|e| e.shown).collect();
    assert_eq!(
        nodes,
        [
            "amqp://relay:[redacted]@rmq-0:5672/%2f",
            "amqps://relay:[redacted]@rmq-1:5671/%2f"
        ]
    );
    let endpoints = s.amqp.endpoints();
    assert!(endpoints.iter().all(|e| e.uri.query.heartbeat == Some(5)));
    let err = Settings::from_toml(&format!(
        "[amqp]\nurls = [\"amqp://a:s3cret-pass-0123@rmq-0:5672/%2f\", \"amqp://a:s3cret-pass-0123@rmq-1:port/%2f\"]\n{MERCHANT}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid configuration: amqp.urls[1]: is not an AMQP URL"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

/// What a configuration file written from settings holds reads back as the same values,
/// secrets included: equality compares them (Debug would hide every one).
#[test]
fn settings_written_out_read_back_as_the_same_values_secrets_included() {
    let toml = format!(
        "[amqp]\nurl = \"amqp://relay:pa55-word-0123456789@rmq-0:5672/%2f\"\n\
         urls = [\"amqp://relay:pa55-word-0123456789@rmq-0:5672/%2f\"]\n\
         [weibo.codes]\ntransient = [99999, 10001]\n[event_log]\nmax_age = \"30D\"\n\
         [reconcile]\nlookback_secs = 3600\n{MERCHANT}"
    );
    let read = Settings::from_toml(&toml).unwrap();
    let written = ::toml::to_string(&read).unwrap();
    let again = Settings::from_toml(&written).unwrap();
    assert_eq!(read, again, "{written}");
    assert_eq!(
        again.weibo.codes.codes(CodeMeaning::Transient),
        [99999, 10001],
        "in the order given"
    );
    let m = again.merchants.get("100023").unwrap();
    assert_eq!(m.client_secret().expose_secret(), "appsecret-0123456789");
    for (from, to) in [
        ("pa55-word-0123456789", "pa55-word-9876543210"),
        ("appsecret-0123456789", "appsecret-9876543210"),
        ("k3y-0123456789abcdef", "k3y-fedcba9876543210"),
    ] {
        let other = Settings::from_toml(&written.replace(from, to)).unwrap();
        assert_ne!(read, other, "a different {to} compares unequal");
    }
}
