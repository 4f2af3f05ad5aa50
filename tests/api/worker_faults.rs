//! Trying hard to lose a fulfilment command: platform outages, a killed worker, no token.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;
use weibo_relay::startup::Roles;
use weibo_relay_tooling::sandbox::Faults;

use crate::support::rig::finish;
use crate::support::*;

#[tokio::test]
async fn platform_time_outs_and_errors_for_a_while_then_every_command_succeeds() {
    let rig = Harness::builder()
        .settings(|s| s.weibo.max_attempts = 8.try_into().unwrap())
        .settings(|s| s.weibo.timeout_ms = 300.try_into().unwrap())
        .rig()
        .await;
    let ids = rig.create_orders(20).await;

    // Phase 1: the platform answers too late. It did the work; the worker could not know.
    rig.faults(json!({"latency_ms": 600})).await;
    for id in &ids[..10] {
        rig.send(finish(id)).await;
    }
    eventually(Duration::from_secs(10), "ten late answers", || async {
        rig.counters().await["calls"]["retailerFinishSub"]["0"] == 10
    })
    .await;
    // Phase 2: the platform fails outright, 25 times, whoever calls.
    rig.faults(json!({"fail_next": 25})).await;
    for id in &ids[10..] {
        rig.send(finish(id)).await;
    }

    let outcomes = rig.outcomes(20).await;
    assert!(
        outcomes.iter().all(|(k, _)| k == "fulfilment.succeeded"),
        "{outcomes:?}"
    );
    for (_, body) in &outcomes {
        let id = body["command"]["sub_order_id"].as_str().unwrap();
        let attempts = body["attempts"].as_u64().unwrap();
        if ids[..10].iter().any(|x| x == id) {
            // Retried after the time-out, the platform said "already finished": success.
            assert_eq!(body["code"], 70102, "{body}");
            assert!(attempts >= 2, "{body}");
        } else {
            assert!((1..=8).contains(&attempts), "{body}");
        }
    }
    let calls = &rig.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls["0"], 20, "each order finished exactly once: {calls}");
    assert_eq!(calls["http_503"], 25, "{calls}");
    assert_eq!(rig.dead_depth().await, 0, "nothing dead-lettered early");
    for id in &ids {
        assert_eq!(rig.order_state(id).await, 301);
    }
}

#[tokio::test]
async fn token_endpoint_down_at_startup_keeps_readiness_false_then_commands_resume() {
    let rig = Harness::builder()
        .faults(Faults {
            token_fail_next: 2,
            ..Faults::default()
        })
        .no_wait()
        .rig()
        .await;
    let ready = rig.app.get("/readyz").await;
    let counters = rig.counters().await;
    assert_eq!(ready.status, 503, "{counters} {}", ready.body);
    ready.assert_refused(503, 50301);
    let ids = rig.create_orders(3).await;
    for id in &ids {
        rig.send(finish(id)).await;
    }
    let outcomes = rig.outcomes(3).await;
    assert!(
        outcomes
            .iter()
            .all(|(k, b)| k == "fulfilment.succeeded" && b["attempts"] == 1),
        "{outcomes:?}"
    );
    assert_eq!(rig.app.get("/readyz").await.status, 200);
    let counters = rig.counters().await;
    assert_eq!(counters["calls"]["authorize"]["http_503"], 2, "{counters}");
    assert_eq!(counters["tokens_issued"][APPID], 1);
    assert_eq!(rig.dead_depth().await, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_batch_and_restarted_loses_no_command() {
    const ORDERS: usize = 60;
    let mut settings = test_settings(AMQP_URL);
    settings.weibo.retry_base_ms = 100.try_into().unwrap();
    settings.weibo.retry_max_ms = 400.try_into().unwrap();
    settings.weibo.rate_limit_per_sec = 1000.try_into().unwrap();
    settings.worker.concurrency = 4.try_into().unwrap();
    settings.worker.prefetch = 8.try_into().unwrap();
    let stage = Harness::builder()
        .base(settings)
        .faults(Faults {
            latency_ms: 20,
            ..Faults::default()
        })
        .stage()
        .await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());

    let first = stage.spawn(BIN, "worker", "warn,weibo_relay::startup=info");
    // Ready means the worker declared its queues: only then can commands be routed.
    first.wait_ready().await;
    let ids = sandbox.create_orders(APPID, ORDERS);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for id in &ids {
        channel
            .basic_publish(
                "".into(),
                settings.amqp.fulfilment_queue.as_str().into(),
                BasicPublishOptions::default(),
                finish(id).to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    let finished = |sandbox: &weibo_relay_tooling::sandbox::SandboxHandle| {
        ids.iter()
            .filter(|id| {
                sandbox
                    .order(APPID, id)
                    .is_some_and(|o| o.state_code == 301)
            })
            .count()
    };
    eventually(Duration::from_secs(20), "a part of the batch done", || {
        let n = finished(sandbox);
        async move { n >= 10 }
    })
    .await;
    let (exit, _) = first.signal("KILL").await;
    assert!(!exit.success());
    let done_at_kill = finished(sandbox);
    assert!(
        done_at_kill < ORDERS,
        "the kill came too late to prove anything"
    );

    let second = stage.spawn(BIN, "worker", "warn,weibo_relay::startup=info");
    eventually(Duration::from_secs(30), "every order finished", || {
        let n = finished(sandbox);
        async move { n == ORDERS }
    })
    .await;
    let dead = channel
        .queue_declare(
            weibo_relay::amqp::Names::new(&settings.amqp)
                .dead()
                .to_owned()
                .as_str()
                .into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(dead.message_count(), 0);
    let (exit, _) = second.signal("TERM").await;
    assert!(exit.success());
    let _ = conn.close(200, "done".into()).await;
}

/// Messages in `queue` now (passive declaration).
async fn depth(app: &TestApp, queue: &str) -> u32 {
    app.channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|q| q.message_count())
        .unwrap_or_else(|e| panic!("{queue}: {e}"))
}

#[tokio::test]
async fn a_new_retry_schedule_starts_cleanly_while_commands_wait_under_the_old_one() {
    // Every command fails once and waits 3 s in the old schedule's delay queue.
    let mut rig = Harness::builder()
        .faults(Faults {
            fail_next: 10,
            ..Default::default()
        })
        .settings(|s| {
            s.weibo.retry_base_ms = 3000.try_into().unwrap();
            s.weibo.retry_max_ms = 3000.try_into().unwrap();
        })
        .rig()
        .await;
    let ids = rig.create_orders(10).await;
    for id in &ids {
        rig.send(finish(id)).await;
    }
    let old_delay = format!("{}.retry.3000ms", rig.app.settings.amqp.fulfilment_queue);
    eventually(
        Duration::from_secs(10),
        "all 10 waiting in the old delay queue",
        || async { depth(&rig.app, &old_delay).await == 10 },
    )
    .await;

    // Stop the worker and start one with another schedule: no procedure, no manual step.
    rig.app.stop().await;
    let mut new_settings = rig.app.settings.clone();
    new_settings.weibo.retry_base_ms = 200.try_into().unwrap();
    new_settings.weibo.retry_max_ms = 800.try_into().unwrap();
    let new_worker = Harness::builder()
        .base(new_settings)
        .roles(Roles::Worker)
        .start()
        .await;
    eventually(Duration::from_secs(10), "new worker ready", || async {
        new_worker.get("/readyz").await.status == 200
    })
    .await;

    // The waiting commands drain from the old queue into the work queue and succeed.
    let outcomes = rig.outcomes(10).await;
    assert!(
        outcomes
            .iter()
            .all(|(key, _)| key == "fulfilment.succeeded"),
        "{outcomes:?}"
    );
    for id in &ids {
        assert_eq!(rig.order_state(id).await, 301, "{id}");
    }
    assert_eq!(depth(&rig.app, &old_delay).await, 0);
    let new_delay = format!("{}.retry.200ms", rig.app.settings.amqp.fulfilment_queue);
    assert_eq!(
        depth(&new_worker, &new_delay).await,
        0,
        "declared by the new worker"
    );
}
