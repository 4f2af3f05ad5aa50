//! Onboarding over HTTP against the real store and the sandbox: consent, denial, and every
//! hostile case the contract names (replayed, unknown and expired state; a code exchanged
//! twice; open redirects; one uid for two refs).

use std::time::{Duration, SystemTime};

use weibo_relay::provider::domain::{MerchantRef, MerchantStatus};
use weibo_relay::provider::onboarding::{CallbackOutcome, CallbackParams, LinkError};
use weibo_relay::provider::store::links::StateRefusal;

use crate::flow::{consent, events, walk, Decision};
use crate::support::{location, query_of, Rig};

fn merchant(text: &str) -> MerchantRef {
    MerchantRef::parse(text).expect("a merchant ref")
}

#[tokio::test]
async fn consent_authorizes_the_merchant_and_sends_the_browser_back_with_success() {
    let rig = Rig::start().await;
    let return_url = format!("{}/done?from=onboarding", rig.backoffice);
    let link = rig
        .onboarding
        .create_link(&merchant("shop-1"), Some(&return_url), SystemTime::now())
        .await
        .unwrap();
    let page = rig.http.get(link.url.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.ends_with(&format!(
            "; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
            rig.sandbox.base_url()
        )),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Acme Fulfilment") && html.contains("shop-1"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("href="),
        "{html}"
    );

    let callback = consent(&rig, link.url.as_str(), "1404376560", Decision::Authorize).await;
    let answer = rig.http.get(&callback).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let back = location(&answer);
    assert!(
        back.starts_with(&format!("{}/done?from=onboarding&", rig.backoffice)),
        "{back}"
    );
    let query = query_of(&back);
    assert_eq!(query["merchant_ref"], "shop-1");
    assert_eq!(query["auth_status"], "SUCCESS");
    assert_eq!(query["auth_fail_reason"], "");
    assert!(!back.contains("2.00"), "no token in the return URL: {back}");

    let row = rig
        .db
        .store
        .merchant(&merchant("shop-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Authorized);
    assert_eq!(row.uid.unwrap().as_str(), "1404376560");
    assert_eq!(row.generation, 1);
    assert!(row.access.is_some() && row.refresh.is_some());
    let events = events(&rig, "shop-1").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "merchant.authorized");
    assert_eq!(events[0].1["merchant_ref"], "shop-1");
    assert_eq!(events[0].1["uid"], "1404376560");
    assert_eq!(events[0].1["status"], "authorized");
    assert!(events[0].1["reason"].is_null());
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!((counters.codes_issued, counters.codes_presented), (1, 1));
    rig.stop().await;
}

#[tokio::test]
async fn denial_sends_the_browser_back_failed_and_records_one_event() {
    let rig = Rig::start().await;
    let walk = walk(
        &rig,
        "shop-2",
        "1404376561",
        Decision::Deny,
        Some(&format!("{}/done", rig.backoffice)),
    )
    .await;
    assert!(
        walk.callback_url
            .contains("error=access_denied&error_code=21330"),
        "{}",
        walk.callback_url
    );
    assert_eq!(walk.answer.status(), 303);
    let query = query_of(&location(&walk.answer));
    assert_eq!(query["auth_status"], "FAILED");
    assert_eq!(query["auth_fail_reason"], "access_denied");
    let row = rig
        .db
        .store
        .merchant(&merchant("shop-2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Pending);
    assert_eq!(row.uid, None);
    assert_eq!(row.last_error.as_deref(), Some("access_denied"));
    let events = events(&rig, "shop-2").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "merchant.authorization_failed");
    assert_eq!(events[0].1["status"], "pending");
    assert_eq!(events[0].1["reason"], "access_denied");
    assert_eq!(rig.sandbox.oauth2().counters().codes_presented, 0);
    rig.stop().await;
}

#[tokio::test]
async fn replayed_unknown_and_expired_states_get_a_4xx_page_and_change_nothing() {
    let rig = Rig::start().await;
    let walk = walk(&rig, "shop-3", "1404376562", Decision::Authorize, None).await;
    assert_eq!(walk.answer.status(), 200);
    let before = rig
        .db
        .store
        .merchant(&merchant("shop-3"))
        .await
        .unwrap()
        .unwrap();

    // The same callback again (a copied URL, a reload): the state is used, the code is not
    // presented again.
    let replay = rig.http.get(&walk.callback_url).send().await.unwrap();
    assert_eq!(replay.status(), 409);
    assert!(replay.text().await.unwrap().contains("already used"));
    // A state never issued, one of the wrong shape, none at all.
    let code = query_of(&walk.callback_url)["code"].clone();
    let callback = rig.config.redirect_uri.as_str();
    for (query, status) in [
        (format!("code={code}&state={}", "A".repeat(43)), 400),
        (format!("code={code}&state=short"), 400),
        (format!("code={code}"), 400),
    ] {
        let answer = rig
            .http
            .get(format!("{callback}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{query}");
        assert_eq!(answer.headers()["cache-control"], "no-store");
    }
    // The link itself is used: it no longer leads to Weibo.
    let link_again = rig.http.get(&walk.link).send().await.unwrap();
    assert_eq!(link_again.status(), 410);
    let press_again = rig.http.post(&walk.link).send().await.unwrap();
    assert_eq!(press_again.status(), 410);
    assert!(press_again.headers().get("location").is_none());

    // Expired: a state whose link ran out between the button and the callback.
    let now = SystemTime::now();
    let old = now - Duration::from_secs(1790);
    let link = rig
        .onboarding
        .create_link(&merchant("shop-3b"), None, old)
        .await
        .unwrap();
    let id = link.url.path().rsplit('/').next().unwrap().to_owned();
    let authorize = rig
        .onboarding
        .begin(&id, now)
        .await
        .unwrap()
        .expect("still valid at the press");
    let state = query_of(authorize.as_str())["state"].clone();
    let params = CallbackParams {
        code: Some("whatever".into()),
        state: Some(state.clone()),
        ..CallbackParams::default()
    };
    let later = now + Duration::from_secs(30);
    assert_eq!(
        rig.onboarding.callback(&params, later).await.unwrap(),
        CallbackOutcome::Refused(StateRefusal::Expired)
    );
    // An expired link's page says so.
    let expired = rig
        .onboarding
        .create_link(&merchant("shop-3c"), None, now - Duration::from_secs(3600))
        .await
        .unwrap();
    let page = rig.http.get(expired.url.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 410);
    assert!(page.text().await.unwrap().contains("expired"));

    let after = rig
        .db
        .store
        .merchant(&merchant("shop-3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.generation, after.status),
        (before.generation, before.status)
    );
    assert_eq!(after.access, before.access);
    assert_eq!(
        events(&rig, "shop-3").await.len(),
        1,
        "only the first authorization"
    );
    assert!(events(&rig, "shop-3b").await.is_empty());
    assert_eq!(
        rig.db
            .store
            .merchant(&merchant("shop-3b"))
            .await
            .unwrap()
            .unwrap()
            .status,
        MerchantStatus::Pending
    );
    assert_eq!(
        rig.sandbox.oauth2().counters().codes_presented,
        1,
        "the code went to Weibo once"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_code_is_exchanged_once_and_a_second_exchange_kills_its_grant() {
    let rig = Rig::start().await;
    let walk = walk(&rig, "shop-4", "1404376563", Decision::Authorize, None).await;
    assert_eq!(walk.answer.status(), 200);
    let token = rig
        .refresher
        .access_token(&merchant("shop-4"))
        .await
        .unwrap()
        .expect("a token");
    // Someone who copied the code presents it to Weibo themselves: refused, and (RFC 6749
    // 4.1.2) the tokens issued from it die.
    let code = query_of(&walk.callback_url)["code"].clone();
    let stolen = rig
        .http
        .post(format!("{}/oauth2/access_token", rig.sandbox.base_url()))
        .form(&[
            ("client_id", crate::support::CLIENT_ID),
            ("client_secret", crate::support::CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", rig.config.redirect_uri.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 400);
    let body: serde_json::Value = stolen.json().await.unwrap();
    assert_eq!(body["error_code"], 21325);
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!((counters.codes_presented, counters.codes_reused), (2, 1));
    let client = crate::support::oauth_client(&rig.sandbox, &rig.config);
    use weibo_relay::provider::oauth::OAuthClient;
    let info = client.token_info(&token.access_token).await.unwrap_err();
    assert!(info.is_token_dead(), "{info:?}");
    rig.stop().await;
}

#[tokio::test]
async fn return_urls_outside_the_allowed_origins_are_refused_and_no_link_is_made() {
    let rig = Rig::start().await;
    let origin = rig.backoffice.clone();
    let host = origin.trim_start_matches("http://");
    let hostile = [
        "//evil.test/done".to_owned(),
        format!("{origin}.evil.test/done"),
        format!("http://{host}@evil.test/done"),
        format!("http://evil.test\\@{host}/done"),
        format!("http://evil.test%2f@{host}/done"),
        format!("http:\\\\evil.test\\{host}"),
        format!("https://{host}/done"),
        "javascript:alert(1)".to_owned(),
        format!("http://evil.test/?next={origin}"),
        format!("{origin}/done\r\nLocation: http://evil.test"),
    ];
    for url in &hostile {
        let refused = rig
            .onboarding
            .create_link(&merchant("shop-5"), Some(url), SystemTime::now())
            .await;
        assert!(
            matches!(refused, Err(LinkError::ReturnUrlRefused)),
            "{url:?}: {refused:?}"
        );
    }
    let (links,): (i64,) = sqlx::query_as("SELECT count(*) FROM provider_links")
        .fetch_one(rig.db.store.pool())
        .await
        .unwrap();
    let (merchants,): (i64,) = sqlx::query_as("SELECT count(*) FROM provider_merchants")
        .fetch_one(rig.db.store.pool())
        .await
        .unwrap();
    assert_eq!((links, merchants), (0, 0));
    rig.stop().await;
}
