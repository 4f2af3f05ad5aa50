//! The worker against poison commands, deleted queues and floods of bad commands.

use super::support::*;
use crate::support::rig::{finish, header_text, text};
use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn poison_commands_neither_loop_nor_cost_the_receiver_an_answer() {
    use lapin::types::AMQPValue;
    use weibo_relay::startup::Roles;
    use weibo_relay::worker::{seal_attempts, SEALED_ATTEMPTS};
    let rig = Harness::builder().roles(Roles::Serve).rig().await;
    let ids = rig.create_orders(5).await;
    let body = |i: usize| finish(&ids[i]).to_string().into_bytes();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let producers = async {
        // A count that wraps a u32 add, as a number and as text.
        rig.send_with_headers(
            body(0),
            table(vec![("x-attempts", AMQPValue::LongUInt(u32::MAX))]),
        )
        .await;
        rig.send_with_headers(body(1), table(vec![("x-attempts", text("4294967295"))]))
            .await;
        // A forged seal.
        rig.send_with_headers(
            body(2),
            table(vec![(
                SEALED_ATTEMPTS,
                text(&format!("4294967295:{}", "0".repeat(32))),
            )]),
        )
        .await;
        // A genuine count at the limit (max_attempts 4): dead at once, no call.
        rig.send_with_headers(
            body(3),
            table(vec![(
                SEALED_ATTEMPTS,
                seal_attempts(4, &body(3), SIGN_KEY.as_bytes()),
            )]),
        )
        .await;
        // 100 KB of headers a republish would carry past the broker's frame size.
        rig.send_with_headers(
            body(4),
            table(vec![
                ("x-huge", text(&"x".repeat(100_000))),
                ("traceparent", text(traceparent)),
            ]),
        )
        .await;
    };
    let statuses = pushes_during(&rig.app, 150, producers).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let outcomes = rig.outcomes(5).await;
    let mut succeeded: Vec<&str> = outcomes
        .iter()
        .filter(|(key, _)| key == "fulfilment.succeeded")
        .map(|(_, o)| {
            assert_eq!(o["attempts"], 1, "{o}");
            o["command"]["sub_order_id"].as_str().unwrap()
        })
        .collect();
    succeeded.sort();
    let mut expected: Vec<&str> = [0, 1, 2, 4].iter().map(|&i| ids[i].as_str()).collect();
    expected.sort();
    assert_eq!(succeeded, expected);
    let (_, failed) = outcomes
        .iter()
        .find(|(key, _)| key == "fulfilment.failed")
        .expect("the command at its limit failed");
    assert_eq!(failed["command"]["sub_order_id"], ids[3].as_str());
    assert_eq!(failed["attempts"], 4);
    let (dead, headers) = rig.next_dead().await;
    assert_eq!(dead, finish(&ids[3]));
    assert!(
        header_text(&headers, "x-death-reason").contains("already made 4 attempts"),
        "{headers:?}"
    );
    // Exactly one platform call per healthy command: no loop, no call for the dead one.
    let calls = &rig.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls, &serde_json::json!({"0": 4}), "{calls}");
    assert_eq!(rig.order_state(&ids[3]).await, 201);
}

#[tokio::test]
async fn queues_deleted_under_the_worker_cost_neither_the_receiver_nor_a_command() {
    use lapin::options::QueueDeleteOptions;
    use weibo_relay::startup::Roles;
    let rig = Harness::builder().roles(Roles::Serve).rig().await;
    let fq = rig.app.settings.amqp.fulfilment_queue.clone();
    let dead = format!("{fq}.dead");
    let chaos = async {
        // The dead queue goes: a poison command's next home is refused (NO_ROUTE).
        rig.app
            .channel
            .queue_delete(dead.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        rig.send_raw(b"not a command".to_vec()).await;
        eventually(Duration::from_secs(15), "poison dead-lettered", || async {
            depth(&rig.app, &dead).await == Some(1)
        })
        .await;
        // The work queue goes: the broker cancels the worker's consumer.
        rig.app
            .channel
            .queue_delete(fq.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        eventually(
            Duration::from_secs(15),
            "work queue declared again",
            || async { depth(&rig.app, &fq).await.is_some() },
        )
        .await;
    };
    let statuses = pushes_during(&rig.app, 200, chaos).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // And the worker consumes again.
    let id = rig.create_orders(1).await.remove(0);
    rig.send(finish(&id)).await;
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.succeeded", "{outcomes:?}");
    assert_eq!(rig.order_state(&id).await, 301);
}

/// Anyone who can publish commands can publish bad ones: 300 of them are all dead-lettered
/// and counted, while the log gets a burst of lines and then about ten a second.
#[tokio::test]
async fn a_flood_of_bad_commands_is_counted_whole_and_logged_sparingly() {
    const BAD: usize = 300;
    let stage = Harness::builder().platform().stage().await;
    let settings = stage.settings();
    let relay = stage.spawn(BIN, "worker", "info");
    relay.wait_ready().await;
    let started = Instant::now();
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for i in 0..BAD {
        channel
            .basic_publish(
                "".into(),
                settings.amqp.fulfilment_queue.as_str().into(),
                Default::default(),
                format!("not a command {i}").as_bytes(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let counted = format!("weibo_relay_dead_letters_total{{cause=\"malformed\"}} {BAD}");
    eventually(
        Duration::from_secs(30),
        "every bad command counted",
        || async {
            reqwest::get(format!("http://{}/metrics", relay.address))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .lines()
                .any(|l| l == counted)
        },
    )
    .await;
    let elapsed = started.elapsed().as_secs() as usize + 1;
    let _ = conn.close(200, "done".into()).await;
    let (_, lines) = relay.signal("TERM").await;
    let logged = lines
        .iter()
        .filter(|l| l.contains("dead-lettering command"))
        .count();
    assert!(
        (1..=10 + 10 * elapsed).contains(&logged),
        "{logged} dead-letter lines for {BAD} commands in {elapsed} s"
    );
}
