//! Losing the node the relay is on.

use super::support::*;
use crate::support::rig::finish;
use crate::support::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use weibo_relay::settings::AmqpUrl;

#[tokio::test]
async fn losing_the_node_the_relay_is_on_costs_seconds_and_no_event_or_command() {
    let port = base_port(0);
    let nodes = Nodes::start("start", port);
    let urls: Vec<String> = (1..=3)
        .map(|n| nodes.get(&format!("node{n}")).to_owned())
        .collect();
    let ports: Vec<u16> = (0..3).map(|i| port + i).collect();
    let mut settings = test_settings(AMQP_URL);
    settings.amqp.url = AmqpUrl::parse(&urls[0]).unwrap();
    settings.amqp.urls = urls.iter().map(|u| AmqpUrl::parse(u).unwrap()).collect();
    settings.amqp.reconnect_max_ms = 1000.try_into().unwrap();
    settings.weibo.retry_base_ms = 200.try_into().unwrap();
    settings.weibo.retry_max_ms = 800.try_into().unwrap();
    // Its queues live on the cluster, and go with it; the stage deletes them first.
    let stage = Harness::builder().base(settings).platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    assert_eq!(settings.amqp.urls.len(), 3);
    // The stage's tap is on this machine's broker; the events go to the cluster: a tap there,
    // a quorum queue with a member on each node.
    let tap = tap_queue(settings);
    let cluster = Connection::connect(&urls[0], Default::default())
        .await
        .unwrap();
    weibo_relay::amqp::Topology::default()
        .exchange(&settings.amqp.events_exchange)
        .queue(weibo_relay::amqp::QueueSpec::quorum(&tap))
        .bind(&tap, &settings.amqp.events_exchange, "order.#")
        .declare(&cluster)
        .await
        .unwrap();
    let _ = cluster.close(200, "tap declared".into()).await;
    let mut relay = stage.spawn(BIN, "serve", "info");
    relay.wait_ready().await;

    let pushes = PushStream::start(relay.address.clone());
    let mut outcomes_expected = 0;
    let mut report = Vec::new();
    // Lose the node the relay is on (an orderly stop), bring it back, then crash (SIGKILL) the
    // node leading the events queue, which makes every channel on it see the leader vanish.
    // The second round loses another node than the first: the leader if it is another one,
    // else the node the relay moved to.
    let mut first_lost = None;
    for verb in ["stop-node", "kill-node"] {
        let relay_on = connected_node(relay.history(), &ports).expect("the relay names its node");
        let on = match (verb, first_lost) {
            ("stop-node", _) => relay_on,
            (_, first) => {
                let leader = nodes.leader_of(&tap);
                if Some(leader) == first {
                    relay_on
                } else {
                    leader
                }
            }
        };
        assert_ne!(Some(on), first_lost, "the same node lost twice");
        first_lost.get_or_insert(on);
        // The test's own connection: a node the relay is not on.
        let other = (1..=3).find(|n| *n != on).unwrap();
        let conn = Connection::connect(&urls[other - 1], Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let outcomes = format!("{}.outcomes", settings.amqp.events_queue);
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(
                outcomes.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                outcomes.as_str().into(),
                settings.amqp.events_exchange.as_str().into(),
                "fulfilment.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let ids = sandbox.create_orders(APPID, 20);
        let send = |ids: Vec<String>| {
            let channel = channel.clone();
            let queue = settings.amqp.fulfilment_queue.clone();
            async move {
                for id in ids {
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            finish(&id).to_string().as_bytes(),
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await
                        .unwrap();
                }
            }
        };
        send(ids[..10].to_vec()).await;
        let lost = Instant::now();
        nodes.node(verb, on);
        send(ids[10..].to_vec()).await;
        outcomes_expected += 20;
        let deadline = Instant::now() + Duration::from_secs(30);
        while relay_on == on && connected_node(relay.history(), &ports).is_none_or(|n| n == on) {
            assert!(
                Instant::now() < deadline,
                "the relay never moved off node {on}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Pushes are answered 200 again, for a while.
        let deadline = Instant::now() + Duration::from_secs(15);
        while pushes.count_since(lost + Duration::from_secs(1), 200) < 20 {
            if Instant::now() > deadline {
                let log = relay.history();
                panic!(
                    "{verb} {on}: pushes not stored again; answers since: {:?}\nrelay log:\n{}",
                    pushes.statuses_since(lost),
                    log[log.len().saturating_sub(40)..].join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let gap = pushes.longest_gap(lost);
        report.push(format!(
            "{verb} {on} (relay on {relay_on}): longest time without a 200: {gap:?}, \
             most non-200 answers in a row: {}",
            pushes.longest_refused_run(lost)
        ));
        assert!(
            gap <= Duration::from_secs(10),
            "{verb} {on}: {gap:?} without a 200"
        );
        // Every command of this round has its outcome.
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !got_outcomes(&channel, &outcomes, &mut got, 20).await {
            assert!(
                Instant::now() < deadline,
                "{got} of 20 outcomes after {verb} {on}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for id in &ids {
            assert_eq!(
                sandbox.order(APPID, id).unwrap().state_code,
                301,
                "order {id} not finished"
            );
        }
        let _ = channel
            .queue_delete(outcomes.as_str().into(), Default::default())
            .await;
        let _ = conn.close(200, "round done".into()).await;
        if verb == "stop-node" {
            nodes.node("start-node", on);
        }
    }
    pushes.stop.cancel();
    eprintln!("{}", report.join("\n"));
    assert_eq!(outcomes_expected, 40);

    // Every push answered 200 is in the tap, read from a node still up.
    let accepted: HashSet<String> = pushes.accepted().into_iter().collect();
    let on = connected_node(relay.history(), &ports).unwrap();
    let conn = Connection::connect(&urls[on - 1], Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut queued = HashSet::new();
    while let Some(m) = channel
        .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let body: Value = serde_json::from_slice(&m.delivery.data).unwrap();
        queued.insert(body["sub_order_id"].as_str().unwrap().to_owned());
    }
    let missing: Vec<&String> = accepted.difference(&queued).collect();
    assert!(
        missing.is_empty(),
        "{} answered 200 but not queued: {missing:?}",
        missing.len()
    );
    assert!(accepted.len() > 100, "{} pushes accepted", accepted.len());
    let _ = conn.close(200, "done".into()).await;
    relay.signal("TERM").await;
}
