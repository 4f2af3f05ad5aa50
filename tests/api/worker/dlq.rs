//! `dlq drop` removes exactly the command named.

use super::support::*;
use crate::support::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn dlq_drop_removes_exactly_the_one_command_named_and_keeps_the_rest() {
    let rig = Harness::builder().rig().await;
    // Two poison commands: one with a message_id, one without (its id is its body's hash).
    rig.app
        .channel
        .basic_publish(
            "".into(),
            rig.app.settings.amqp.fulfilment_queue.as_str().into(),
            Default::default(),
            b"poison one",
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id("cmd-0001".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    rig.send_raw(b"poison two".to_vec()).await;
    eventually(Duration::from_secs(5), "two dead commands", || async {
        rig.dead_depth().await == 2
    })
    .await;
    let amqp = &rig.app.settings.amqp;

    let out = dlq_cli(&rig.app.settings, &["list", "--json"]);
    assert!(out.status.success());
    let listed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = listed.iter().map(|l| l["id"].as_str().unwrap()).collect();
    use sha2::Digest;
    let hashed = format!(
        "sha256:{}",
        hex::encode(&sha2::Sha256::digest(b"poison two")[..16])
    );
    assert_eq!(ids, ["cmd-0001", hashed.as_str()]);

    let unknown = dlq_cli(&rig.app.settings, &["drop", "--id", "cmd-9999"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(unknown.stderr).unwrap(),
        format!(
            "weibo-relay: no dead command with id \"cmd-9999\" in {}.dead\n",
            amqp.fulfilment_queue
        )
    );
    let dropped = dlq_cli(&rig.app.settings, &["drop", "--id", &hashed]);
    assert!(dropped.status.success(), "{dropped:?}");
    eventually(Duration::from_secs(5), "one dead command left", || async {
        rig.dead_depth().await == 1
    })
    .await;
    let left = weibo_relay::worker::dlq::list(amqp, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "cmd-0001");
    assert_eq!(left[0].body, "poison one");

    // `--limit` has no made-up default.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["dlq", "redrive", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("all of them when absent"), "{help}");
    assert!(!help.contains("18446744073709551615"), "{help}");
}
