//! Fulfilment is never starved by the gateway: with the deployment's rate at 20 calls a
//! second and `gateway.share` 0.5, a client flooding the gateway from 16 connections leaves
//! fulfilment commands their half, and still gets its own calls through.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::gateway::*;
use crate::support::rig::finish;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_finish_on_time_while_a_client_floods_the_gateway() {
    let gw = Arc::new(
        GatewayRig::on(Harness::builder().settings(|s| {
            with_gateway(s);
            s.weibo.rate_limit_per_sec = 20.try_into().unwrap();
            s.gateway.share = serde_json::from_value(json!(0.5)).unwrap();
            s.reconcile.enabled = false;
        }))
        .await,
    );
    let ids = gw.rig.create_orders(10).await;
    let (stop, served) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (gw, stop, served) = (gw.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                let info = json!({"appid": APPID, "params": {"goods_id": "1"}});
                while !stop.load(Ordering::Relaxed) {
                    let answer = gw.call(ALL_KEY, "goods/getGoodsInfo", info.clone()).await;
                    if answer.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The flood holds the permits' line before the commands arrive.
    let flooding = served.clone();
    eventually(Duration::from_secs(10), "the flood is served", || {
        let flooding = flooding.clone();
        async move { flooding.load(Ordering::Relaxed) >= 20 }
    })
    .await;
    let started = Instant::now();
    for id in &ids {
        gw.rig.send(finish(id)).await;
    }
    let outcomes = gw.rig.outcomes(10).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    assert!(
        outcomes
            .iter()
            .all(|(key, _)| key == "fulfilment.succeeded"),
        "{outcomes:?}"
    );
    eprintln!(
        "10 commands under a 16-connection flood: {took:?}; flood served {}",
        served.load(Ordering::Relaxed)
    );
    // Half of 20 a second is 10 commands in about a second; well within 5 s.
    assert!(took < Duration::from_secs(5), "10 commands took {took:?}");
    assert!(
        served.load(Ordering::Relaxed) >= 25,
        "the gateway got its share too"
    );
}
