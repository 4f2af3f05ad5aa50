//! One refresh per merchant across the deployment, against the real store and the sandbox:
//! racing processes and pools, invalid_grant, back-off, a crash between the platform's answer
//! and the store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use weibo_relay::provider::domain::{MerchantRef, MerchantStatus};
use weibo_relay::provider::oauth::OAuthClient;
use weibo_relay::provider::refresh::{RefreshOutcome, Refresher, Why};
use weibo_relay_tooling::sandbox::OAuth2Faults;

use crate::flow::{events, onboard};
use crate::support::{oauth_client, quick_policy, Rig};

pub(crate) fn merchant(text: &str) -> MerchantRef {
    MerchantRef::parse(text).expect("a merchant ref")
}

/// The refresh token now in the row, opened.
pub(crate) async fn refresh_token_of(rig: &Rig, r: &str) -> Option<String> {
    let row = rig.db.store.merchant(&merchant(r)).await.unwrap()?;
    let sealed = row.refresh?;
    let token = rig
        .config
        .keys
        .open(
            &merchant(r),
            weibo_relay::provider::crypto::Column::RefreshToken,
            &sealed,
        )
        .ok()?;
    Some(token.expose_secret().to_owned())
}

/// Makes `r` due now, as if its 75 % mark had passed.
pub(crate) async fn make_due(rig: &Rig, r: &str) {
    sqlx::query("UPDATE provider_merchants SET next_refresh_at = now() - interval '1 second' WHERE merchant_ref = $1")
        .bind(r)
        .execute(rig.db.store.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn pools_racing_for_one_merchant_present_its_refresh_token_once() {
    let rig = Rig::start().await;
    onboard(&rig, "race", "1404376700").await;
    // Slow answers, so every racer is inside its refresh while the first waits for Weibo.
    rig.sandbox.oauth2().set_faults(OAuth2Faults {
        delay_ms: 300,
        ..OAuth2Faults::default()
    });
    make_due(&rig, "race").await;
    let due_now = SystemTime::now();
    let mut racers = Vec::new();
    for i in 0..8 {
        // Each racer has its own pool: what separate relay processes hold.
        let store = rig.db.another_store().await;
        let client = Arc::new(oauth_client(&rig.sandbox, &rig.config));
        let refresher = Refresher::new(store, client, rig.config.keys.clone(), quick_policy());
        let why = if i % 2 == 0 {
            Why::Due
        } else {
            Why::Rejected { generation: 1 }
        };
        racers.push(tokio::spawn(async move {
            refresher
                .refresh(&merchant("race"), why, due_now)
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    let refreshed = outcomes
        .iter()
        .filter(|o| matches!(o, RefreshOutcome::Refreshed { .. }))
        .count();
    let done = outcomes
        .iter()
        .filter(|o| **o == RefreshOutcome::AlreadyDone)
        .count();
    assert_eq!((refreshed, done), (1, 7), "{outcomes:?}");
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(
        (counters.refresh_presented, counters.refresh_presented_again),
        (1, 0)
    );
    let row = rig
        .db
        .store
        .merchant(&merchant("race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.generation, row.status),
        (2, MerchantStatus::Authorized)
    );
    // Whoever waited reads the new token: it is live at Weibo.
    let token = rig
        .refresher
        .access_token(&merchant("race"))
        .await
        .unwrap()
        .unwrap();
    let client = oauth_client(&rig.sandbox, &rig.config);
    assert_eq!(
        client
            .token_info(&token.access_token)
            .await
            .unwrap()
            .uid
            .as_str(),
        "1404376700"
    );
    assert_eq!(
        events(&rig, "race").await.len(),
        1,
        "a refresh is no change of state"
    );
    rig.stop().await;
}

#[tokio::test]
async fn invalid_grant_makes_the_merchant_need_reauthorization_with_one_event() {
    let rig = Rig::start().await;
    onboard(&rig, "lapsed", "1404376701").await;
    onboard(&rig, "fine", "1404376702").await;
    rig.sandbox.oauth2().set_faults(OAuth2Faults {
        refresh: Some("invalid_grant".into()),
        uids: Some(vec!["1404376701".into()]),
        delay_ms: 100,
    });
    make_due(&rig, "lapsed").await;
    make_due(&rig, "fine").await;
    let later = SystemTime::now();
    let mut racers = Vec::new();
    for _ in 0..4 {
        let refresher = rig.refresher.clone();
        racers.push(tokio::spawn(async move {
            refresher
                .refresh(&merchant("lapsed"), Why::Rejected { generation: 1 }, later)
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == RefreshOutcome::NeedsReauthorization)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == RefreshOutcome::NotAuthorized)
            .count(),
        3
    );
    // Sweeps after it find nothing to do for it; the other merchant refreshes as usual.
    for _ in 0..3 {
        rig.refresher.sweep(later).await.unwrap();
    }
    let row = rig
        .db
        .store
        .merchant(&merchant("lapsed"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::NeedsReauthorization);
    assert!(row.access.is_none() && row.refresh.is_none());
    assert_eq!(row.last_error.as_deref(), Some("invalid_grant"));
    let events = events(&rig, "lapsed").await;
    let kinds: Vec<_> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["merchant.authorized", "merchant.needs_reauthorization"]
    );
    assert_eq!(events[1].1["reason"], "invalid_grant");
    assert_eq!(events[1].1["uid"], "1404376701");
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(counters.refresh_faulted, 1, "presented once, never retried");
    assert_eq!(counters.refreshed_by_uid.get("1404376702"), Some(&1));
    // Authorizing again recovers it: one `merchant.recovered`.
    rig.sandbox.oauth2().set_faults(OAuth2Faults::default());
    onboard(&rig, "lapsed", "1404376701").await;
    let kinds: Vec<_> = crate::flow::events(&rig, "lapsed")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("merchant.recovered"));
    rig.stop().await;
}

#[tokio::test]
async fn transient_failures_back_off_instead_of_hammering() {
    let rig = Rig::start().await;
    onboard(&rig, "flaky", "1404376703").await;
    rig.sandbox.oauth2().set_faults(OAuth2Faults {
        refresh: Some("unavailable".into()),
        ..OAuth2Faults::default()
    });
    let due = SystemTime::now() + Duration::from_secs(3 * 3600);
    let report = rig.refresher.sweep(due).await.unwrap();
    assert_eq!(report.failed, 1);
    let row = rig
        .db
        .store
        .merchant(&merchant("flaky"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status, row.refresh_failures),
        (MerchantStatus::Authorized, 1)
    );
    assert!(
        row.last_error.as_deref().unwrap().contains("21331"),
        "{:?}",
        row.last_error
    );
    let retry_at = row.next_refresh_at.unwrap();
    // The cooldown is 2 s ±20 % in the test policy (30 s in production).
    assert!(
        retry_at >= due + Duration::from_millis(1600) - Duration::from_secs(1),
        "{retry_at:?}"
    );
    // Sweeping again before it: nothing presented.
    for _ in 0..5 {
        assert_eq!(rig.refresher.sweep(due).await.unwrap().failed, 0);
    }
    assert_eq!(rig.sandbox.oauth2().counters().refresh_presented, 1);
    // Still failing after the cooldown: the wait doubles.
    rig.refresher.sweep(retry_at).await.unwrap();
    let row = rig
        .db
        .store
        .merchant(&merchant("flaky"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.refresh_failures, 2);
    let second_wait = row
        .next_refresh_at
        .unwrap()
        .duration_since(retry_at)
        .unwrap();
    assert!(second_wait >= Duration::from_secs(3), "{second_wait:?}");
    // Weibo back: the next sweep after the wait refreshes, failures forgotten.
    rig.sandbox.oauth2().set_faults(OAuth2Faults::default());
    let report = rig
        .refresher
        .sweep(row.next_refresh_at.unwrap())
        .await
        .unwrap();
    assert_eq!(report.refreshed, 1);
    let row = rig
        .db
        .store
        .merchant(&merchant("flaky"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.refresh_failures, row.last_error), (0, None));
    assert_eq!(
        events(&rig, "flaky").await.len(),
        1,
        "transient failures publish nothing"
    );
    rig.stop().await;
}

#[tokio::test]
async fn the_window_a_crash_could_lose_is_one_update_and_commit() {
    let rig = Rig::start().await;
    onboard(&rig, "window", "1404376704").await;
    let mut windows = Vec::new();
    for generation in 1..=200 {
        let outcome = rig
            .refresher
            .refresh(
                &merchant("window"),
                Why::Rejected { generation },
                SystemTime::now(),
            )
            .await
            .unwrap();
        match outcome {
            RefreshOutcome::Refreshed { store_window, .. } => windows.push(store_window),
            other => panic!("{other:?}"),
        }
    }
    windows.sort();
    let (p50, p99, max) = (windows[100], windows[197], windows[199]);
    println!("store window over 200 refreshes: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(
        (counters.refreshed, counters.refresh_presented_again),
        (200, 0)
    );
    rig.stop().await;
}
