//! Ending an authorization: Weibo's cancel callback, genuine or forged, and `merchants revoke`.

use std::time::SystemTime;

use weibo_relay::provider::domain::{MerchantRef, MerchantStatus};
use weibo_relay::provider::onboarding::RevokeOutcome;
use weibo_relay::provider::refresh::{RefreshOutcome, Why};

use crate::flow::{events, onboard};
use crate::refresh::make_due;
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

#[tokio::test]
async fn a_refused_call_of_a_withdrawn_authorization_revokes_once_token_info_confirms() {
    let rig = Rig::start().await;
    let (gone, lapsed, due) = ("1404376580", "1404376581", "1404376582");
    onboard(&rig, "gone", gone).await;
    onboard(&rig, "lapsed", lapsed).await;
    onboard(&rig, "due", due).await;
    // Withdrawn at Weibo, the cancel callback lost on the way; one merely expired.
    assert_eq!(rig.sandbox.oauth2().withdraw(gone), 1);
    assert_eq!(rig.sandbox.oauth2().withdraw(due), 1);
    assert_eq!(rig.sandbox.oauth2().expire_access(lapsed), 1);
    let asked = rig.sandbox.oauth2().counters().token_info_calls;
    let now = SystemTime::now();

    // A call was refused: the refresh is refused too, get_token_info calls the unexpired
    // token dead, so the authorization was withdrawn.
    let outcome = rig
        .refresher
        .refresh(&merchant("gone"), Why::Rejected { generation: 1 }, now)
        .await
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::Revoked);
    // Merely expired: refreshed, nothing asked.
    let outcome = rig
        .refresher
        .refresh(&merchant("lapsed"), Why::Rejected { generation: 1 }, now)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RefreshOutcome::Refreshed { .. }),
        "{outcome:?}"
    );
    // A due refresh refused keeps invalid_grant's one meaning.
    make_due(&rig, "due").await;
    let outcome = rig
        .refresher
        .refresh(&merchant("due"), Why::Due, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::NeedsReauthorization);
    assert_eq!(rig.sandbox.oauth2().counters().token_info_calls, asked + 1);

    let row = |r: &'static str| {
        let store = rig.db.store.clone();
        async move { store.merchant(&merchant(r)).await.unwrap().unwrap() }
    };
    let gone_row = row("gone").await;
    assert_eq!(
        (gone_row.status, gone_row.last_error.as_deref()),
        (MerchantStatus::Revoked, Some("authorization_withdrawn"))
    );
    assert!(gone_row.access.is_none() && gone_row.refresh.is_none());
    assert_eq!(row("lapsed").await.status, MerchantStatus::Authorized);
    assert_eq!(
        row("due").await.status,
        MerchantStatus::NeedsReauthorization
    );
    let kinds: Vec<String> = events(&rig, "gone")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, ["merchant.authorized", "merchant.revoked"]);
    let (_, body) = events(&rig, "gone").await.pop().unwrap();
    assert_eq!(body["reason"], "authorization_withdrawn");
    // Asked again (another process that saw the same refusal): nothing more happens.
    let again = rig
        .refresher
        .refresh(&merchant("gone"), Why::Rejected { generation: 1 }, now)
        .await
        .unwrap();
    assert_eq!(again, RefreshOutcome::NotAuthorized);
    assert_eq!(events(&rig, "gone").await.len(), 2);
    rig.stop().await;
}
