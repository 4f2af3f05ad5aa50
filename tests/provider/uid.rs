//! One Weibo uid belongs to one merchant_ref (PingPong's rule), over the whole flow; the same
//! ref again is re-authorization.

use weibo_relay::provider::domain::{MerchantRef, MerchantStatus};

use crate::flow::{events, walk, Decision};
use crate::support::{location, query_of, Rig};

fn merchant(text: &str) -> MerchantRef {
    MerchantRef::parse(text).expect("a merchant ref")
}

#[tokio::test]
async fn one_uid_belongs_to_one_merchant_ref() {
    let rig = Rig::start().await;
    let first = walk(&rig, "shop-a", "1404376564", Decision::Authorize, None).await;
    assert_eq!(first.answer.status(), 200);
    let a_before = rig
        .db
        .store
        .merchant(&merchant("shop-a"))
        .await
        .unwrap()
        .unwrap();
    let second = walk(
        &rig,
        "shop-b",
        "1404376564",
        Decision::Authorize,
        Some(&format!("{}/done", rig.backoffice)),
    )
    .await;
    let query = query_of(&location(&second.answer));
    assert_eq!(query["auth_status"], "FAILED");
    assert_eq!(query["auth_fail_reason"], "uid_bound_to_another_merchant");
    let b = rig
        .db
        .store
        .merchant(&merchant("shop-b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.status, b.uid, b.access.is_some()),
        (MerchantStatus::Pending, None, false)
    );
    let a = rig
        .db
        .store
        .merchant(&merchant("shop-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.generation, &a.access),
        (a_before.generation, &a_before.access)
    );
    let b_events = events(&rig, "shop-b").await;
    assert_eq!(b_events.len(), 1);
    assert_eq!(b_events[0].0, "merchant.authorization_failed");
    assert_eq!(b_events[0].1["reason"], "uid_bound_to_another_merchant");

    // The same ref again as its own uid: re-authorization, new tokens, no new event.
    let again = walk(&rig, "shop-a", "1404376564", Decision::Authorize, None).await;
    assert_eq!(again.answer.status(), 200);
    let a_after = rig
        .db
        .store
        .merchant(&merchant("shop-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_after.generation, a_before.generation + 1);
    assert_ne!(a_after.access, a_before.access);
    assert_eq!(
        events(&rig, "shop-a").await.len(),
        1,
        "authorized once; re-authorizing is no change of state"
    );
    // ... but as another uid it is refused: the ref is bound while authorized.
    let other = walk(&rig, "shop-a", "1404376599", Decision::Authorize, None).await;
    assert!(other
        .answer
        .text()
        .await
        .unwrap()
        .contains("merchant_ref_bound_to_another_uid"));
    rig.stop().await;
}
