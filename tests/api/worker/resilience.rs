//! A worker cut off or with its queue deleted carries on.

use crate::support::proxy::TcpProxy;
use crate::support::rig::*;
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_worker_cut_off_between_call_and_ack_repeats_the_call_harmlessly() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let rig = Harness::builder().amqp_url(&proxy.amqp_url()).rig().await;
    let ids = rig.create_orders(1).await;
    rig.faults(json!({"latency_ms": 400})).await;
    rig.send(finish(&ids[0])).await;
    // While the call is in flight, the worker loses the broker: its ack cannot happen.
    eventually(Duration::from_secs(5), "call in flight", || async {
        rig.counters().await["calls"]["retailerFinishSub"].is_null() && {
            let r = rig
                .admin(reqwest::Method::GET, "/admin/requests", None)
                .await;
            r.as_array()
                .unwrap()
                .iter()
                .any(|x| x["endpoint"] == "retailerFinishSub")
        }
    })
    .await;
    proxy.cut();
    eventually(Duration::from_secs(5), "worker sees the loss", || async {
        rig.app.get("/readyz").await.status == 503
    })
    .await;
    rig.faults(json!({})).await;
    proxy.restore();

    // The repeat finds the order already finished. The first call's outcome may or may not
    // have been published (on the new link) before its ack failed: outcomes are at least once.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|(_, b): &(String, Value)| b["code"] == 70102)
    {
        seen.extend(rig.outcomes(1).await);
        assert!(seen.len() <= 2, "{seen:?}");
    }
    assert!(
        seen.iter().all(|(k, _)| k == "fulfilment.succeeded"),
        "{seen:?}"
    );
    let calls = &rig.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls["0"], 1);
    assert_eq!(calls["70102"], 1);
    assert_eq!(rig.order_state(&ids[0]).await, 301);
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn a_deleted_work_queue_is_redeclared_and_consumed_again() {
    let rig = Harness::builder().rig().await;
    let ids = rig.create_orders(1).await;
    let queue = rig.app.settings.amqp.fulfilment_queue.clone();
    rig.app
        .channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    // The broker cancels the worker's consumer; the worker reconnects and redeclares. A
    // passive declare of a missing queue closes its channel, so each probe gets a new one.
    let probe = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "work queue back", || async {
        weibo_relay::amqp::topology::queue_depth(&probe, &queue)
            .await
            .is_ok_and(|depth| depth.is_some())
    })
    .await;
    rig.send(finish(&ids[0])).await;
    let ok = rig.outcomes(1).await;
    assert_eq!(ok[0].0, "fulfilment.succeeded");
}
