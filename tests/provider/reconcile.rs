//! Provider mode's reconciliation in the shipped binary: each authorized merchant's order list
//! is read with that merchant's token (signed by the provider), and the states no push brought
//! are published naming the merchant, as its pushes would be, once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use weibo_relay_tooling::stage;

use crate::commands::{authorize, OTHER_UID, PROVIDER_APPID};
use crate::relay::{ProviderRelay, UID};
use crate::tap::next_event;

#[tokio::test]
async fn each_merchant_is_reconciled_with_its_own_token_and_named_in_its_events_once() {
    let relay = ProviderRelay::start_with(|s| {
        s.reconcile.interval_secs = 1.try_into().unwrap();
        s.reconcile.settle_secs = 1.try_into().unwrap();
        s.reconcile.lookback_secs = 3600.try_into().unwrap();
    })
    .await;
    authorize(&relay, "shop-1", UID).await;
    authorize(&relay, "shop-2", OTHER_UID).await;
    // Orders whose pushes never came: only the sweeps can bring them.
    let mut expected = BTreeMap::new();
    for id in relay.sandbox.create_merchant_orders(PROVIDER_APPID, UID, 2) {
        expected.insert(id, ("shop-1".to_owned(), UID.to_owned()));
    }
    for id in relay
        .sandbox
        .create_merchant_orders(PROVIDER_APPID, OTHER_UID, 1)
    {
        expected.insert(id, ("shop-2".to_owned(), OTHER_UID.to_owned()));
    }

    let mut got = BTreeMap::new();
    while got.len() < expected.len() {
        let (key, header, body) = next_event(&relay.settings).await;
        assert_eq!(key, "order.sub_order.201", "{body}");
        assert_eq!(
            body["merchant_ref"].as_str(),
            Some(header.as_str()),
            "{body}"
        );
        let id = body["sub_order_id"].as_str().expect("an id").to_owned();
        let tagged = (header, body["uid"].as_str().unwrap_or_default().to_owned());
        assert!(got.insert(id, tagged).is_none(), "published twice: {body}");
    }
    assert_eq!(got, expected);

    // Two more sweeps of each merchant publish nothing more.
    let calls = |uid: &str| {
        relay
            .sandbox
            .oauth2()
            .counters()
            .calls_by_uid
            .get(uid)
            .copied()
            .unwrap_or(0)
    };
    let before = (calls(UID), calls(OTHER_UID));
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(UID) < before.0 + 2 || calls(OTHER_UID) < before.1 + 2 {
        assert!(Instant::now() < deadline, "no further sweeps within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connection = stage::connect_url(&relay.settings.amqp.url, "provider reconcile test")
        .await
        .expect("the broker");
    let channel = connection.create_channel().await.expect("a channel");
    let tap = stage::tap_queue(&relay.settings);
    let extra = channel
        .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    assert!(extra.is_none(), "a state published twice");
    let _ = connection.close(200, "done".into()).await;
    relay.stop().await;
}
