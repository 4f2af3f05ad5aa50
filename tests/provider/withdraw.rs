//! Ending an authorization: Weibo's cancel callback, genuine or forged, and `merchants revoke`.

use std::time::SystemTime;

use weibo_relay::provider::domain::{MerchantRef, MerchantStatus};
use weibo_relay::provider::onboarding::RevokeOutcome;

use crate::flow::{events, onboard};
use crate::support::{Rig, CLIENT_ID};

fn merchant(text: &str) -> MerchantRef {
    MerchantRef::parse(text).expect("a merchant ref")
}

#[tokio::test]
async fn a_forged_cancel_callback_changes_nothing_and_a_genuine_one_revokes() {
    let rig = Rig::start().await;
    onboard(&rig, "shop-c", "1404376570").await;
    let cancel = format!("{}/connect/cancelled", rig.pages);
    let before = rig
        .db
        .store
        .merchant(&merchant("shop-c"))
        .await
        .unwrap()
        .unwrap();

    // Forged: right source and uid, but the authorization is alive at Weibo.
    let forged = rig
        .http
        .get(&cancel)
        .query(&[
            ("source", CLIENT_ID),
            ("uid", "1404376570"),
            ("auth_end", "1700000000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    assert_eq!(forged.text().await.unwrap(), "ok");
    assert_eq!(
        rig.sandbox.oauth2().counters().token_info_calls,
        1,
        "confirmed with get_token_info"
    );
    // Wrong source, unknown uid, garbage: the same answer, and no question to Weibo.
    for query in [
        vec![("source", "999"), ("uid", "1404376570")],
        vec![("source", CLIENT_ID), ("uid", "1")],
        vec![("source", CLIENT_ID), ("uid", "12a")],
        vec![],
    ] {
        let answer = rig.http.get(&cancel).query(&query).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{query:?}");
    }
    assert_eq!(rig.sandbox.oauth2().counters().token_info_calls, 1);
    let after = rig
        .db
        .store
        .merchant(&merchant("shop-c"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.status, after.generation),
        (MerchantStatus::Authorized, before.generation)
    );
    assert_eq!(events(&rig, "shop-c").await.len(), 1);

    // Genuine: the merchant withdrew at Weibo, which then calls back.
    let status = rig
        .sandbox
        .oauth2()
        .cancel("1404376570", true)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let row = rig
        .db
        .store
        .merchant(&merchant("shop-c"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Revoked);
    assert!(
        row.access.is_none() && row.refresh.is_none(),
        "tokens deleted"
    );
    let events = events(&rig, "shop-c").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].0, "merchant.revoked");
    assert_eq!(events[1].1["reason"], "authorization_withdrawn");
    // The callback repeated: nothing more.
    assert_eq!(
        rig.sandbox
            .oauth2()
            .cancel("1404376570", true)
            .await
            .unwrap(),
        200
    );
    assert_eq!(crate::flow::events(&rig, "shop-c").await.len(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn revoke_withdraws_at_weibo_and_deletes_the_tokens() {
    let rig = Rig::start().await;
    onboard(&rig, "shop-r", "1404376571").await;
    let token = rig
        .refresher
        .access_token(&merchant("shop-r"))
        .await
        .unwrap()
        .unwrap();
    let outcome = rig
        .onboarding
        .revoke(&merchant("shop-r"), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(outcome, RevokeOutcome::Revoked);
    assert_eq!(rig.sandbox.oauth2().counters().revoke_calls, 1);
    use weibo_relay::provider::oauth::OAuthClient;
    let client = crate::support::oauth_client(&rig.sandbox, &rig.config);
    assert!(client
        .token_info(&token.access_token)
        .await
        .unwrap_err()
        .is_token_dead());
    let row = rig
        .db
        .store
        .merchant(&merchant("shop-r"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Revoked);
    assert!(row.access.is_none());
    assert_eq!(
        rig.onboarding
            .revoke(&merchant("shop-r"), SystemTime::now())
            .await
            .unwrap(),
        RevokeOutcome::NotAuthorized(MerchantStatus::Revoked)
    );
    let events = events(&rig, "shop-r").await;
    assert_eq!(
        events.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["merchant.authorized", "merchant.revoked"]
    );
    // A revoked merchant may authorize again: a new consent, a new `authorized`.
    onboard(&rig, "shop-r", "1404376571").await;
    assert_eq!(
        rig.db
            .store
            .merchant(&merchant("shop-r"))
            .await
            .unwrap()
            .unwrap()
            .status,
        MerchantStatus::Authorized
    );
    assert_eq!(crate::flow::events(&rig, "shop-r").await.len(), 3);
    rig.stop().await;
}
