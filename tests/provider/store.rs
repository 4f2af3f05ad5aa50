//! The store on the real PostgreSQL: its own rules (one uid per ref, the outbox's leases), the
//! database dumped in clear, and a key rotated and moved by `rekey`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use secrecy::ExposeSecret;
use weibo_relay::provider::crypto::Column;
use weibo_relay::provider::domain::{EventKind, MerchantEvent, MerchantRef, MerchantStatus, Uid};
use weibo_relay::provider::refresh::{Refresher, Why};
use weibo_relay::provider::store::{merchants, outbox};

use crate::flow::onboard;
use crate::support::{fresh_keys, oauth_client, quick_policy, ring, Rig, TestDb};

fn merchant(text: &str) -> MerchantRef {
    MerchantRef::parse(text).expect("a merchant ref")
}

#[tokio::test]
async fn the_database_refuses_a_uid_for_two_refs_whoever_writes() {
    let db = TestDb::new().await;
    let keys = Arc::new(ring(&fresh_keys(&["k1"])));
    let uid = Uid::parse("1404376580").unwrap();
    let tokens = move |m: &MerchantRef| {
        let token = secrecy::SecretString::from("2.00x");
        weibo_relay::provider::store::NewTokens {
            access: keys.seal(m, Column::AccessToken, &token),
            refresh: keys.seal(m, Column::RefreshToken, &token),
            access_expires_at: SystemTime::now(),
            refresh_expires_at: SystemTime::now(),
            obtained_at: SystemTime::now(),
            next_refresh_at: SystemTime::now(),
        }
    };
    // Two processes' pools, each binding the uid to its own ref at the same moment.
    let other = db.another_store().await;
    let (a, b) = (merchant("a"), merchant("b"));
    let mut tx_a = db.store.begin().await.unwrap();
    let mut tx_b = other.begin().await.unwrap();
    merchants::ensure(&mut tx_a, &a).await.unwrap();
    merchants::ensure(&mut tx_b, &b).await.unwrap();
    merchants::store_tokens(&mut tx_a, &a, &uid, &tokens(&a))
        .await
        .unwrap();
    let tokens_b = tokens.clone();
    let b_write = tokio::spawn(async move {
        let tokens = tokens_b;
        let result = merchants::store_tokens(&mut tx_b, &b, &uid, &tokens(&b)).await;
        (result, tx_b)
    });
    tx_a.commit().await.unwrap();
    let (result, _tx_b) = b_write.await.unwrap();
    let error = result.unwrap_err();
    assert!(merchants::is_uid_taken(&error), "{error}");
    let rows = db.store.merchants().await.unwrap();
    let bound: Vec<_> = rows
        .iter()
        .filter(|r| r.uid.is_some())
        .map(|r| r.merchant_ref.as_str())
        .collect();
    assert_eq!(bound, ["a"]);
}

#[tokio::test]
async fn outbox_rows_are_taken_once_and_come_back_when_a_lease_ends() {
    let db = TestDb::new().await;
    let now = SystemTime::now();
    let mut tx = db.store.begin().await.unwrap();
    for i in 0..5 {
        let event = MerchantEvent {
            merchant_ref: format!("m{i}"),
            uid: None,
            status: MerchantStatus::Pending,
            reason: Some("access_denied".into()),
            at: "2026-12-07T00:00:00Z".into(),
        };
        outbox::enqueue(&mut tx, EventKind::AuthorizationFailed, &event)
            .await
            .unwrap();
    }
    // Not committed: a publisher sees nothing yet.
    assert!(db
        .store
        .take_outbox(10, Duration::from_secs(30), now)
        .await
        .unwrap()
        .is_empty());
    tx.commit().await.unwrap();
    let other = db.another_store().await;
    let first = db
        .store
        .take_outbox(3, Duration::from_secs(30), now)
        .await
        .unwrap();
    let second = other
        .take_outbox(10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(
        second.len(),
        2,
        "the other publisher takes only what is free"
    );
    assert!(first
        .iter()
        .all(|r| r.routing_key == "merchant.authorization_failed"));
    let body: serde_json::Value = serde_json::from_str(&first[0].body).unwrap();
    assert_eq!(body["merchant_ref"], "m0");
    db.store
        .confirm_outbox(&[first[0].id, first[1].id], now)
        .await
        .unwrap();
    other
        .release_outbox(&second.iter().map(|r| r.id).collect::<Vec<_>>())
        .await
        .unwrap();
    // Released rows are free at once; the first publisher's unconfirmed row after its lease.
    let again = other
        .take_outbox(10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .map(|r| r.merchant_ref.as_str())
            .collect::<Vec<_>>(),
        ["m3", "m4"]
    );
    let after_lease = other
        .take_outbox(10, Duration::from_secs(30), now + Duration::from_secs(31))
        .await
        .unwrap();
    let refs: Vec<_> = after_lease
        .iter()
        .map(|r| r.merchant_ref.as_str())
        .collect();
    assert_eq!(refs, ["m2", "m3", "m4"]);
}

/// Every text the dump must not hold: tokens as issued, keys in base64 and hex, link ids.
fn secrets_of(rig: &Rig, refs: &[&str], tokens: &[String]) -> Vec<String> {
    let _ = refs;
    let mut secrets: Vec<String> = tokens.to_vec();
    for key in &rig.settings.store_keys {
        let b64 = key.key.expose_secret().to_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .unwrap();
        secrets.push(b64);
        secrets.push(hex::encode(&raw));
    }
    secrets.push(crate::support::CLIENT_SECRET.to_owned());
    secrets
}

#[tokio::test]
async fn the_database_dumped_shows_no_token_key_or_link_in_clear() {
    let rig = Rig::start().await;
    let refs = ["dump-1", "dump-2", "dump-3"];
    for (i, r) in refs.iter().enumerate() {
        onboard(&rig, r, &format!("140437659{i}")).await;
    }
    let refresher = &rig.refresher;
    refresher
        .refresh(
            &merchant("dump-1"),
            Why::Rejected { generation: 1 },
            SystemTime::now(),
        )
        .await
        .unwrap();
    let open_link = rig
        .onboarding
        .create_link(&merchant("dump-4"), None, SystemTime::now())
        .await
        .unwrap();
    let link_id = open_link.url.path().rsplit('/').next().unwrap().to_owned();
    let keys = &rig.config.keys;
    let mut tokens = vec![link_id];
    for r in refs {
        let row = rig.db.store.merchant(&merchant(r)).await.unwrap().unwrap();
        for (column, sealed) in [
            (Column::AccessToken, row.access.unwrap()),
            (Column::RefreshToken, row.refresh.unwrap()),
        ] {
            let token = keys.open(&merchant(r), column, &sealed).unwrap();
            assert!(token.expose_secret().starts_with("2.00"));
            tokens.push(token.expose_secret().to_owned());
        }
    }
    let dump = std::process::Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--no-owner",
            "-d",
            &rig.db.name,
        ])
        .output()
        .expect("pg_dump runs (postgresql-client)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8(dump.stdout).unwrap();
    assert!(
        text.contains("COPY public.provider_merchants")
            && text.contains("dump-1")
            && text.contains("k1")
    );
    for secret in secrets_of(&rig, &refs, &tokens) {
        assert!(
            !text.contains(&secret),
            "found in the dump: {}…",
            &secret[..8]
        );
    }
    assert!(
        !text.contains("2.00"),
        "no Weibo token shape anywhere in the dump"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_rotated_key_still_reads_old_rows_and_rekey_moves_every_row() {
    let rig = Rig::start().await;
    for i in 0..6 {
        onboard(&rig, &format!("rk-{i}"), &format!("14043766{i:02}")).await;
    }
    // k2 arrives in front of k1 (newest first); old rows still open, new ones seal with k2.
    let mut keys = fresh_keys(&["k2"]);
    keys.extend(rig.settings.store_keys.clone());
    let rotated = ring(&keys);
    let client = Arc::new(oauth_client(&rig.sandbox, &rig.config));
    let refresher = Refresher::new(
        rig.db.store.clone(),
        client,
        rotated.clone(),
        quick_policy(),
    );
    assert!(refresher
        .access_token(&merchant("rk-0"))
        .await
        .unwrap()
        .is_some());
    refresher
        .refresh(
            &merchant("rk-0"),
            Why::Rejected { generation: 1 },
            SystemTime::now(),
        )
        .await
        .unwrap();
    let row = rig
        .db
        .store
        .merchant(&merchant("rk-0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.access.as_ref().unwrap().key_id, "k2");
    let report = rig.db.store.rekey(&rotated, 4).await.unwrap();
    assert_eq!((report.moved, report.current, report.failed), (5, 1, 0));
    let again = rig.db.store.rekey(&rotated, 4).await.unwrap();
    assert_eq!((again.moved, again.current), (0, 6));
    // Only k2 now: every row opens without k1; k1 alone opens none.
    let only_new = ring(&keys[..1]);
    let only_old = ring(&keys[1..]);
    for row in rig.db.store.merchants().await.unwrap() {
        for (column, sealed) in [
            (Column::AccessToken, row.access.unwrap()),
            (Column::RefreshToken, row.refresh.unwrap()),
        ] {
            assert!(only_new.open(&row.merchant_ref, column, &sealed).is_ok());
            assert!(only_old.open(&row.merchant_ref, column, &sealed).is_err());
        }
    }
    rig.stop().await;
}
