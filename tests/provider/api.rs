//! Provider mode's merchants API on the gateway listener, in the shipped binary: links,
//! status and revocation as `weibo-relay merchants` offers them, for clients with
//! `merchants = true` only.

use weibo_relay::settings::{GatewayClient, KeyHash};

use crate::relay::{ProviderRelay, UID};
use crate::tap::next_event;

const ADMIN_KEY: &str = "back-office-key-0123456789abcdef";
const OTHER_KEY: &str = "stock-sync-key-0123456789abcdefg";

fn client(name: &str, key: &str, merchants: bool) -> GatewayClient {
    GatewayClient {
        name: name.into(),
        key_sha256: KeyHash::of(key),
        interfaces: if merchants {
            vec![]
        } else {
            vec!["goods/getGoodsInfo".into()]
        },
        appids: if merchants { vec![] } else { vec!["*".into()] },
        rate_limit_per_sec: 10u64.try_into().unwrap(),
        merchants,
    }
}

#[tokio::test]
async fn the_back_office_links_lists_shows_and_revokes_merchants_over_the_gateway_listener() {
    let mut relay = ProviderRelay::start_with(|s| {
        s.gateway.bind = Some(([127, 0, 0, 1], 0).into());
        s.gateway.clients = vec![
            client("back-office", ADMIN_KEY, true),
            client("stock-sync", OTHER_KEY, false),
        ];
    })
    .await;
    let api = format!("http://{}/v1/merchants", relay.gateway_address());
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut request = http.request(method, format!("{api}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    };
    // The listener comes up with the relay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while call(reqwest::Method::GET, "", None).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no gateway listener");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Only a merchants client: no key, a stranger's, or a client without merchants = true.
    for key in [None, Some("not-a-key"), Some(OTHER_KEY)] {
        let answer = call(reqwest::Method::GET, "", key).send().await.unwrap();
        assert_eq!(answer.status(), 401, "{key:?}");
    }

    let linked = call(reqwest::Method::POST, "/shop-1/link", Some(ADMIN_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), 201);
    let linked: serde_json::Value = linked.json().await.unwrap();
    assert_eq!(linked["merchant_ref"], "shop-1", "{linked}");
    let link = linked["link"].as_str().expect("a link");
    assert!(
        link.starts_with(&format!("{}/connect/", relay.base)),
        "{link}"
    );
    assert_eq!(relay.consent(link, UID).await, 200);
    assert_eq!(next_event(&relay.settings).await.0, "merchant.authorized");

    let shown: serde_json::Value = call(reqwest::Method::GET, "/shop-1", Some(ADMIN_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["uid"].as_str()),
        (Some("authorized"), Some(UID)),
        "{shown}"
    );
    let listed: serde_json::Value = call(reqwest::Method::GET, "", Some(ADMIN_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["merchants"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let text = listed.to_string();
    assert!(
        !text.contains("access_token") && !text.contains("refresh_token"),
        "no token: {listed}"
    );

    // Hostile and wrong requests, each with its status.
    for (method, path, body, status) in [
        (reqwest::Method::POST, "/bad%20ref/link", None, 400),
        (
            reqwest::Method::POST,
            "/shop-2/link",
            Some(r#"{"return_url":"https://evil.example/x"}"#),
            400,
        ),
        (
            reqwest::Method::POST,
            "/shop-2/link",
            Some(r#"{"nope":1}"#),
            400,
        ),
        (reqwest::Method::GET, "/shop-9", None, 404),
        (reqwest::Method::POST, "/shop-9/revoke", None, 404),
        (reqwest::Method::DELETE, "/shop-1", None, 404),
    ] {
        let mut request = call(method.clone(), path, Some(ADMIN_KEY));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), status, "{method} {path}");
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        assert_eq!(body["code"], status, "{method} {path}: {body}");
    }

    let revoked = call(reqwest::Method::POST, "/shop-1/revoke", Some(ADMIN_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(relay.sandbox.oauth2().counters().revoke_calls, 1);
    let again = call(reqwest::Method::POST, "/shop-1/revoke", Some(ADMIN_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(relay.sandbox.oauth2().counters().revoke_calls, 1);
    relay.stop().await;
}
