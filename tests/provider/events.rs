//! The merchant events the store's outbox holds match `docs/schemas/merchant-event.json`, one
//! of each kind made for real.

use std::time::SystemTime;

use weibo_relay::provider::refresh::{RefreshOutcome, Why};
use weibo_relay_tooling::sandbox::OAuth2Faults;

use crate::flow::{onboard, walk, Decision};
use crate::refresh::{make_due, merchant};
use crate::support::Rig;

#[tokio::test]
async fn every_kind_of_merchant_event_matches_its_schema() {
    let rig = Rig::start().await;
    onboard(&rig, "ev-authorized", "1404377000").await;
    walk(&rig, "ev-denied", "1404377001", Decision::Deny, None).await;
    onboard(&rig, "ev-lapsed", "1404377002").await;
    rig.sandbox.oauth2().set_faults(OAuth2Faults {
        refresh: Some("invalid_grant".into()),
        ..OAuth2Faults::default()
    });
    make_due(&rig, "ev-lapsed").await;
    let lapsed = rig
        .refresher
        .refresh(&merchant("ev-lapsed"), Why::Due, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(lapsed, RefreshOutcome::NeedsReauthorization);
    rig.sandbox.oauth2().set_faults(OAuth2Faults::default());
    onboard(&rig, "ev-lapsed", "1404377002").await;
    rig.onboarding
        .revoke(&merchant("ev-authorized"), SystemTime::now())
        .await
        .unwrap();

    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas/merchant-event.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles");
    let mut kinds = std::collections::BTreeSet::new();
    for r in ["ev-authorized", "ev-denied", "ev-lapsed"] {
        for row in rig.db.store.events_of(r).await.unwrap() {
            let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{} {body}: {errors:?}", row.routing_key);
            kinds.insert(row.routing_key);
        }
    }
    let kinds: Vec<_> = kinds.iter().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "merchant.authorization_failed",
            "merchant.authorized",
            "merchant.needs_reauthorization",
            "merchant.recovered",
            "merchant.revoked"
        ]
    );
    rig.stop().await;
}
