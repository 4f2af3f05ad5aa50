//! The broker permissions README grants the relay are enough.

use super::support::*;
use crate::support::rig::{finish, header_text};
use crate::support::*;
use std::time::Duration;

/// Run as a user with only the README's permissions, every part of `serve` works: a push is
/// stored, a command retried through its delay queue and finished, a bad one dead-lettered,
/// the keeper's token announced and a lost state reconciled (read marks and all).
#[tokio::test]
async fn the_relay_needs_no_more_than_the_permissions_readme_grants_it() {
    let user = format!("wr-test-{}", uuid::Uuid::new_v4().simple());
    let password = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("amqp://{user}:{password}@127.0.0.1:5672/%2f");
    let granted: std::sync::Arc<std::sync::Mutex<Option<BrokerUser>>> = Default::default();
    let grant = granted.clone();
    let rig = Harness::builder()
        .amqp_url(&url)
        .roles(weibo_relay::startup::Roles::Serve)
        .settings(move |s| {
            let run = s.amqp.events_exchange.trim_end_matches("events");
            let [configure, write, read] = readme_relay_permissions(run);
            assert!(write.contains("amq\\.default"), "{write}");
            *grant.lock().unwrap() = Some(BrokerUser::create(
                &user, &password, &configure, &write, &read,
            ));
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 1.try_into().unwrap();
        })
        .rig()
        .await;
    assert!(granted.lock().unwrap().is_some());

    let (body, _) = valid_form_push();
    rig.app.post_form(body).await.assert_success();
    let ids = rig.create_orders(2).await;
    rig.faults(serde_json::json!({"error_rate": 1.0})).await;
    rig.send(finish(&ids[0])).await;
    eventually(Duration::from_secs(20), "a retry", || async {
        rig.metric("weibo_relay_retries_total ").await == "weibo_relay_retries_total 1"
    })
    .await;
    rig.faults(serde_json::json!({})).await;
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.succeeded", "{outcomes:?}");
    rig.send(serde_json::json!({"appid": APPID, "sub_order_id": ids[1], "action": "close"}))
        .await;
    let (_, headers) = rig.next_dead().await;
    assert!(
        header_text(&headers, "x-death-reason").contains("reason"),
        "{headers:?}"
    );
    // The two orders' states no push brought, from reconciliation: each sweep appends its
    // read mark to the event log through the default exchange.
    eventually(Duration::from_secs(20), "two states reconciled", || async {
        let reconciled = rig.metric("weibo_relay_reconciled_events_total ").await;
        reconciled
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            >= Some(2)
    })
    .await;
    assert_eq!(
        rig.metric("weibo_relay_reconcile_sweeps_total{outcome=\"failed\"}")
            .await,
        "weibo_relay_reconcile_sweeps_total{outcome=\"failed\"} 0"
    );
    assert!(rig.app.queue_depth().await >= 3);
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 1);

    // An operator's replay as this user, into a queue named from the configured names: its
    // exchange of the time being is named from them too, so these permissions suffice.
    let target = format!("{}.replayed", rig.app.settings.amqp.events_queue);
    rig.app
        .channel
        .queue_declare(
            target.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let _target = queues_deleted_after(&[&target]);
    let options = weibo_relay::event::replay::ReplayOptions {
        since: std::time::SystemTime::now() - Duration::from_secs(3600),
        until: std::time::SystemTime::now(),
        appid: None,
        sub_order_id: None,
        routing_key: Some("order.sub_order.*".parse().unwrap()),
        to_queue: target.clone(),
    };
    let replayed = weibo_relay::event::replay::replay(
        &rig.app.settings,
        &options,
        |_| {},
        &Default::default(),
    )
    .await
    .unwrap();
    assert!(replayed.published >= 3, "{replayed:?}");
    assert_eq!(rig.app.depth_of(&target).await as u64, replayed.published);
}
