//! One example against a real relay and the sandbox pushing every order change, and what
//! must hold afterwards.

use crate::support::example::{Example, CLOSE_EVERY, ORDERS, SUMMARY};
use crate::support::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};
use weibo_relay_tooling::sandbox::{PushSchedule, PushSender, SandboxHandle, CLOSED, FINISHED};

pub(crate) fn trace_id(headers: &Option<FieldTable>) -> Option<String> {
    match headers.as_ref()?.inner().get("traceparent")? {
        AMQPValue::LongString(s) => Some(s.to_string().split('-').nth(1)?.to_owned()),
        _ => None,
    }
}

/// Waits for the next message of `queue`.
pub(crate) async fn next(channel: &lapin::Channel, queue: &str) -> lapin::message::Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(got) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return got.delivery;
        }
        assert!(Instant::now() < deadline, "nothing arrived in {queue}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn final_state(sandbox: &SandboxHandle, id: &str) -> Option<u16> {
    let state = sandbox.order(APPID, id)?.state_code;
    (state == FINISHED || state == CLOSED).then_some(state)
}

/// The whole run for one example; `command` gets the example's options appended.
pub(crate) async fn prove(mut command: Command) {
    let started = Instant::now();
    let stage = Harness::builder().platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    let relay = stage.spawn(BIN, "serve", "warn,weibo_relay::startup=info");
    relay.wait_ready().await;
    let amqp = &settings.amqp;
    let tap = tap_queue(settings);
    // The platform pushes every order change to the relay, redelivering 100x faster than
    // the real one when a push is not answered 200.
    let sender = PushSender::start(
        sandbox,
        format!("http://{}{}", relay.address, settings.push.path),
        PushSchedule::scaled(0.01),
    );

    // This test's own view: every outcome.
    let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let name = format!("{}.shop", amqp.events_queue);
    let outcomes = format!("{}.outcomes-seen-by-test", amqp.events_queue);
    let _queues = queues_deleted_after(&[
        &format!("{name}.paid-orders"),
        &format!("{name}.outcomes"),
        &outcomes,
    ]);
    channel
        .queue_declare(
            outcomes.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            outcomes.as_str().into(),
            amqp.events_exchange.as_str().into(),
            "fulfilment.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    command.args([
        "--amqp-url",
        AMQP_URL,
        "--exchange",
        &amqp.events_exchange,
        "--fulfilment-queue",
        &amqp.fulfilment_queue,
        "--name",
        &name,
        "--orders",
        &ORDERS.to_string(),
        "--close-every",
        &CLOSE_EVERY.to_string(),
        "--seconds",
        "20",
    ]);
    let example = Example::start(command);
    // Its queues must be bound before the first order exists, or it misses the event.
    example.wait_for("ready:", Duration::from_secs(20));

    // One order first, answered before anything else happens...
    let first = sandbox.create_orders(APPID, 1).remove(0);
    eventually(
        Duration::from_secs(10),
        "the first order answered",
        || async { final_state(sandbox, &first).await.is_some() },
    )
    .await;
    // ...then its event again, whole (a redelivery), and as another event of the same order
    // state (a reconciliation), and its outcome again. They are ahead of every later order
    // in the example's queues, so it has seen them all before it can finish.
    let event = next(&channel, &tap).await;
    assert_eq!(event.routing_key.as_str(), "order.sub_order.201");
    let publish = |routing_key: String, body: Vec<u8>, properties: lapin::BasicProperties| {
        let channel = channel.clone();
        let exchange = amqp.events_exchange.clone();
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish(
        event.routing_key.to_string(),
        event.data.clone(),
        event.properties.clone(),
    )
    .await;
    let mut headers = event.properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-weibo-source".into(),
        AMQPValue::LongString("reconcile".into()),
    );
    publish(
        event.routing_key.to_string(),
        event.data.clone(),
        event
            .properties
            .clone()
            .with_message_id(uuid::Uuid::new_v4().simple().to_string().as_str().into())
            .with_headers(headers),
    )
    .await;
    let outcome = next(&channel, &outcomes).await;
    publish(
        outcome.routing_key.to_string(),
        outcome.data.clone(),
        outcome.properties.clone(),
    )
    .await;
    // The rest.
    let mut ids = sandbox.create_orders(APPID, ORDERS - 1);
    ids.push(first);

    let (status, printed) = example.exit(Duration::from_secs(25)).await;
    assert!(status.success(), "the example exited {status}:\n{printed}");
    let summary = printed
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line:\n{printed}"));
    assert_eq!(summary, SUMMARY, "the example printed:\n{printed}");

    let mut finished = 0;
    for id in &ids {
        match final_state(sandbox, id).await {
            Some(FINISHED) => finished += 1,
            Some(_) => {}
            None => panic!("order {id} is not final at the platform:\n{printed}"),
        }
    }
    assert_eq!(finished, ORDERS - ORDERS / CLOSE_EVERY);

    // Each command carried its event's traceparent: every outcome is in a paid event's trace.
    let mut paid_traces = HashSet::new();
    while let Some(got) = channel
        .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        if got.delivery.routing_key.as_str() == "order.sub_order.201" {
            paid_traces.extend(trace_id(got.delivery.properties.headers()));
        }
    }
    paid_traces.extend(trace_id(event.properties.headers()));
    let mut traced = 0;
    while let Some(got) = channel
        .basic_get(outcomes.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = trace_id(got.delivery.properties.headers()).expect("an outcome traceparent");
        assert!(
            paid_traces.contains(&id),
            "outcome outside every event's trace: {id}"
        );
        traced += 1;
    }
    assert_eq!(
        traced, ORDERS,
        "outcomes left after the first one (and its copy)"
    );

    sender.stop().await;
    drop(relay);
    let _ = conn.close(200, "test done".into()).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
