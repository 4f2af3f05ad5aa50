//! The RabbitMQ definitions are exactly the topology the relay declares.

use super::support::*;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn deploy_rabbitmq_definitions_match_the_declared_topology() {
    let topology = declared_topology();
    let path = deploy().join("rabbitmq/definitions.json");
    let defs: Json = serde_json::from_str(&read(&path)).unwrap();
    // Nothing else (no policies: they could contradict the declared arguments).
    assert_eq!(
        keys(&defs),
        BTreeSet::from(["vhosts", "exchanges", "queues", "bindings"])
    );
    assert_eq!(defs["vhosts"], json!([{"name": "/"}]));

    // Exchanges: durable topic, no arguments (Topology::declare).
    let exchanges = defs["exchanges"].as_array().unwrap();
    let mut names = Vec::new();
    for e in exchanges {
        let name = e["name"].as_str().unwrap();
        let expected = json!({"name": name, "vhost": "/", "type": "topic", "durable": true,
            "auto_delete": false, "internal": false, "arguments": {}});
        assert_eq!(e, &expected, "exchange {name}");
        names.push(name.to_owned());
    }
    assert_eq!(names, topology.exchanges());

    // Queues: durable, not auto-delete, and exactly the declared arguments.
    let mut file_queues: BTreeMap<String, Json> = BTreeMap::new();
    for q in defs["queues"].as_array().unwrap() {
        assert_eq!(
            keys(q),
            BTreeSet::from(["name", "vhost", "durable", "auto_delete", "arguments"])
        );
        let name = q["name"].as_str().unwrap().to_owned();
        assert_eq!(q["vhost"], "/", "{name}");
        assert_eq!(q["durable"], true, "{name}");
        assert_eq!(q["auto_delete"], false, "{name}");
        assert!(
            file_queues
                .insert(name.clone(), q["arguments"].clone())
                .is_none(),
            "{name} twice"
        );
    }
    let declared: BTreeMap<String, Json> = topology
        .queues()
        .iter()
        .map(|q| (q.name.clone(), arguments_json(&q.arguments)))
        .collect();
    assert_eq!(declared.len(), topology.queues().len());
    assert_eq!(file_queues, declared);

    // Bindings.
    let mut file_bindings = Vec::new();
    for b in defs["bindings"].as_array().unwrap() {
        assert_eq!(
            keys(b),
            BTreeSet::from([
                "source",
                "vhost",
                "destination",
                "destination_type",
                "routing_key",
                "arguments"
            ])
        );
        assert_eq!(b["vhost"], "/");
        assert_eq!(b["destination_type"], "queue");
        assert_eq!(b["arguments"], json!({}));
        file_bindings.push((
            b["destination"].as_str().unwrap().to_owned(),
            b["source"].as_str().unwrap().to_owned(),
            b["routing_key"].as_str().unwrap().to_owned(),
        ));
    }
    let mut declared_bindings = topology.bindings().to_vec();
    file_bindings.sort();
    declared_bindings.sort();
    assert_eq!(file_bindings, declared_bindings);

    // What the README promises for the defaults: one delay queue per delay, named by it,
    // 5 s doubling to 320 s, each expiring a day after its last declaration.
    let delays: Vec<(i64, i64)> = file_queues
        .iter()
        .filter(|(name, _)| name.starts_with("weibo.fulfilment.retry."))
        .map(|(name, args)| {
            let ttl = args["x-message-ttl"].as_i64().unwrap();
            assert_eq!(name, &format!("weibo.fulfilment.retry.{ttl}ms"));
            (ttl, args["x-expires"].as_i64().unwrap() - ttl)
        })
        .collect();
    let mut ttls: Vec<i64> = delays.iter().map(|(t, _)| *t).collect();
    ttls.sort();
    assert_eq!(ttls, [5000, 10000, 20000, 40000, 80000, 160000, 320000]);
    assert!(
        delays.iter().all(|(_, grace)| *grace == 86_400_000),
        "{delays:?}"
    );
}
