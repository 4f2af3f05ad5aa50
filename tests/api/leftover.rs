//! The catch-all events queue (`amqp.events_queue`, `weibo.orders`) earlier releases
//! declared: the relay declares none, keeps every event routable through its event log, and
//! names one left behind (check, and each relay as it connects).

use std::time::Duration;

use lapin::types::FieldTable;

use crate::check::{check, line};
use crate::support::*;

/// The catch-all events queue earlier releases declared, left on the broker: bound to every
/// event and read by nobody it fills the broker, so check fails it with its depth and the
/// command that deletes it; read by a consumer it is only a note.
#[tokio::test]
async fn check_names_a_leftover_events_queue_with_its_depth_and_how_to_delete_it() {
    let stage = Harness::builder().platform().stage().await;
    let settings = stage.settings().clone();
    let amqp = &settings.amqp;
    let leftover = amqp.events_queue.clone();
    let _cleanup = queues_deleted_after(&[&leftover]);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    // As an earlier release declared it: a quorum queue bound to order.#.
    weibo_relay::amqp::Topology::default()
        .exchange(&amqp.events_exchange)
        .queue(weibo_relay::amqp::QueueSpec::quorum(&leftover))
        .bind(&leftover, &amqp.events_exchange, "order.#")
        .declare(&conn)
        .await
        .unwrap();
    for _ in 0..3 {
        channel
            .basic_publish(
                amqp.events_exchange.as_str().into(),
                "order.sub_order.201".into(),
                Default::default(),
                b"{}",
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(5), "3 messages in it", || async {
        weibo_relay::amqp::topology::queue_depth(&conn, &leftover)
            .await
            .unwrap()
            == Some(3)
    })
    .await;

    let (code, lines, stderr) = check(&relay_toml(&settings)).await;
    assert_eq!(code, Some(2), "{lines:#?}");
    assert_eq!(
        line(&lines, &format!("FAIL queue {leftover}: ")),
        format!(
            "FAIL queue {leftover}: left by an earlier release: 3 message(s), no consumer, and every event adds one until RabbitMQ's memory or disk alarm blocks all publishing. The relay no longer declares it ({leftover}.log keeps every event): delete it with `rabbitmqctl delete_queue {leftover}`"
        )
    );
    assert_eq!(
        stderr,
        format!("weibo-relay: 1 of {} checks failed\n", lines.len())
    );

    // Someone reads it: their queue now, a note, and check passes.
    let reader = conn.create_channel().await.unwrap();
    let _consumer = reader
        .basic_consume(
            leftover.as_str().into(),
            "reader".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (code, lines, _) = check(&relay_toml(&settings)).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        line(&lines, &format!("note queue {leftover}: ")).starts_with(&format!(
            "note queue {leftover}: left by an earlier release, read by 1 consumer(s)"
        )),
        "{lines:#?}"
    );
    let _ = conn.close(200, "done".into()).await;
}

/// A relay declares no queue named `amqp.events_queue`: every event stays routable through the
/// event log alone (a push is answered 200 with the test's tap unbound), and a queue of that
/// name left by an earlier release makes each relay say, at start, how full it is and how to
/// delete it.
#[tokio::test]
async fn a_relay_declares_no_events_queue_and_warns_of_one_left_behind() {
    let stage = Harness::builder().stage().await;
    let settings = stage.settings().clone();
    let amqp = &settings.amqp;
    let mut relay = stage.spawn(BIN, "receiver", "info");
    relay.wait_ready().await;
    // Looking for a leftover that is not there costs no line: not lapin's ERROR for the
    // passive declaration it answered with NOT_FOUND either.
    let errors: Vec<&String> = relay
        .history()
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("NOT_FOUND"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let depth = |queue: String| {
        let conn = &conn;
        async move {
            weibo_relay::amqp::topology::queue_depth(conn, &queue)
                .await
                .unwrap()
        }
    };
    assert_eq!(depth(amqp.events_queue.clone()).await, None);
    let log = weibo_relay::amqp::Names::new(amqp).event_log().to_owned();
    assert!(depth(log).await.is_some(), "the event log is declared");
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_unbind(
            tap_queue(&settings).as_str().into(),
            amqp.events_exchange.as_str().into(),
            "order.#".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (push, _) = valid_form_push();
    assert_eq!(relay.post_form(push).await, 200);

    // Left by an earlier release, with two events in it: the next relay says so at start.
    let leftover = amqp.events_queue.clone();
    let _cleanup = queues_deleted_after(&[&leftover]);
    weibo_relay::amqp::Topology::default()
        .queue(weibo_relay::amqp::QueueSpec::quorum(&leftover))
        .bind(&leftover, &amqp.events_exchange, "order.#")
        .declare(&conn)
        .await
        .unwrap();
    for _ in 0..2 {
        let (push, _) = valid_form_push();
        assert_eq!(relay.post_form(push).await, 200);
    }
    let mut next = stage.spawn(BIN, "receiver", "info");
    next.wait_ready().await;
    let warned = next
        .history()
        .iter()
        .find(|l| l.contains("a queue an earlier release declared"))
        .cloned()
        .unwrap_or_else(|| panic!("no warning about {leftover}"));
    let warned: serde_json::Value = serde_json::from_str(&warned).unwrap();
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert_eq!(warned["queue"], leftover.as_str(), "{warned}");
    assert_eq!(warned["messages"], 2, "{warned}");
    assert_eq!(
        warned["delete"],
        format!("rabbitmqctl delete_queue {leftover}"),
        "{warned}"
    );
    let _ = conn.close(200, "done".into()).await;
}
