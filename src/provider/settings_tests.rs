use base64::Engine;

use super::*;

/// A `[provider]` section that parses; tests change one key at a time.
pub(crate) fn example() -> ProviderSettings {
    let key = |b: u8| SecretString::from(base64::engine::general_purpose::STANDARD.encode([b; 32]));
    toml::from_str::<ProviderSettings>(
        r#"
        appid = "100023"
        sign_key = "provider-sign-key-0123"
        client_id = "772915"
        client_secret = "provider-client-secret-0123"
        redirect_uri = "https://relay.test/connect/callback"
        public_base = "https://relay.test"
        return_url_origins = ["https://backoffice.test", "http://127.0.0.1:9000"]
        store_url = "postgres://relay@db/relay"
        store_keys = []
        "#,
    )
    .map(|mut s| {
        s.store_keys = vec![
            StoreKey {
                id: "k2".into(),
                key: key(2),
            },
            StoreKey {
                id: "k1".into(),
                key: key(1),
            },
        ];
        s
    })
    .unwrap()
}

#[test]
fn the_example_parses_with_its_defaults() {
    let config = example().parse().unwrap();
    assert_eq!(config.link_ttl, Duration::from_secs(1800));
    assert_eq!(config.push_merchant_field, "uid");
    assert_eq!(config.keys.newest_id(), "k2");
    assert_eq!(config.name, "Weibo app 772915");
    assert_eq!(config.redirect_uri.path(), "/connect/callback");
    let shown = format!("{config:?}{:?}", example());
    for secret in [
        "provider-sign-key-0123",
        "provider-client-secret-0123",
        "relay@db",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn each_bad_key_is_named() {
    type Change = Box<dyn Fn(&mut ProviderSettings)>;
    let cases: Vec<(&str, Change)> = vec![
        ("appid", Box::new(|s| s.appid = "abc".into())),
        ("sign_key", Box::new(|s| s.sign_key = "short".into())),
        (
            "client_secret",
            Box::new(|s| s.client_secret = "REPLACE-with-the-real-one".into()),
        ),
        (
            "redirect_uri",
            Box::new(|s| s.redirect_uri = "http://relay.test/connect/callback".into()),
        ),
        (
            "public_base",
            Box::new(|s| s.public_base = "relay.test".into()),
        ),
        (
            "return_url_origins",
            Box::new(|s| s.return_url_origins = vec!["https://backoffice.test/path".into()]),
        ),
        ("link_ttl_secs", Box::new(|s| s.link_ttl_secs = 5)),
        ("store_url", Box::new(|s| s.store_url = "mysql://x".into())),
        (
            "push_merchant_field",
            Box::new(|s| s.push_merchant_field = "Uid!".into()),
        ),
    ];
    for (key, change) in cases {
        let mut settings = example();
        change(&mut settings);
        match settings.parse() {
            Err(ProviderSettingsError::Invalid { key: named, .. }) => assert_eq!(named, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    let mut no_keys = example();
    no_keys.store_keys.clear();
    assert_eq!(
        no_keys.parse().unwrap_err(),
        ProviderSettingsError::Keys(KeyRingError::Empty)
    );
}

#[test]
fn return_urls_outside_the_origins_are_refused_however_dressed() {
    let origins = example().parse().unwrap().return_origins;
    for good in [
        "https://backoffice.test/merchants/42?tab=auth",
        "HTTPS://BACKOFFICE.TEST/x",
        "https://backoffice.test:443/x",
        "http://127.0.0.1:9000/done",
        // The same hosts in other spellings: normalised to them before the check.
        "http://0x7f.0.0.1:9000/done",
        "https://backoffice\u{3002}test/x",
    ] {
        assert!(origins.check(good).is_some(), "{good}");
    }
    for evil in [
        "//evil.test/x",
        "/relative",
        "https://backoffice.test.evil.test/x",
        "https://backoffice.test@evil.test/x",
        "https://evil.test@backoffice.test/x",
        "https://evil.test\\@backoffice.test/x",
        "https:\\\\evil.test/x",
        "https://backoffice.test%2f@evil.test/",
        "https://backoffice.test%2eevil.test/",
        "https://evil.test/https://backoffice.test/",
        "https://backoffice.test:8443/x",
        "http://backoffice.test/x",
        "javascript:alert(1)//https://backoffice.test",
        "data:text/html,https://backoffice.test",
        "https://backoffice.test/\nLocation: https://evil.test",
        " https://backoffice.test/x",
        "http://127.0.0.1:9001/x",
    ] {
        assert_eq!(origins.check(evil), None, "{evil:?} accepted");
    }
    // What is accepted is the normalised form, which is what the browser gets.
    assert_eq!(
        origins.check("HTTPS://BACKOFFICE.TEST/x").unwrap().as_str(),
        "https://backoffice.test/x"
    );
}

/// The relay's settings carry `[provider]` parsed: a bad value stops the load naming its key,
/// the store URL can come from the environment (compose.provider.yaml), and the section
/// written back as a file loads the same.
#[test]
fn provider_in_the_relay_settings_is_parsed_overridden_by_env_and_written_back() {
    let mut written = example();
    written.store_keys.truncate(1);
    let toml =
        toml::to_string(&std::collections::BTreeMap::from([("provider", &written)])).unwrap();
    let path = std::env::temp_dir().join(format!("wr-provider-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, &toml).unwrap();
    let env = [(
        "WEIBO_RELAY__PROVIDER__STORE_URL".to_owned(),
        "postgres://relay:pw@postgres:5432/relay".to_owned(),
    )];
    let loaded = crate::settings::Settings::load(Some(&path), env.clone()).unwrap();
    let provider = loaded.provider.as_ref().expect("a provider section");
    assert_eq!(
        provider.config().store_url.expose_secret(),
        "postgres://relay:pw@postgres:5432/relay"
    );
    assert_eq!(provider.config().client_id, "772915");
    let again = crate::settings::Settings::load(Some(&path), env).unwrap();
    assert_eq!(loaded, again);
    std::fs::write(
        &path,
        toml.replace("client_id = \"772915\"", "client_id = \"abc\""),
    )
    .unwrap();
    let refused = crate::settings::Settings::load(Some(&path), Vec::new()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        refused
            .to_string()
            .contains("provider.client_id must be 1 to 20 digits"),
        "{refused}"
    );
}
