//! README's "Developing against the sandbox", run as written: its `dev.toml`, then its four
//! commands in its order (platform, relay, consumer, orders), with the test's binary, free
//! ports and names of its own. Every order it creates must end final at the platform: a
//! walkthrough that created the orders before the consumer's queue existed would leave them
//! unanswered.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weibo_relay::settings::Settings;

use crate::support::example::{python, Example};
use crate::support::*;

/// The README's text of the section.
fn section() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let from = readme
        .find("## Developing against the sandbox")
        .expect("the section");
    let rest = &readme[from..];
    let to = rest[2..].find("\n## ").map_or(rest.len(), |i| i + 2);
    rest[..to].to_owned()
}

/// The shell lines of the section's code blocks, comments and blank lines left out.
fn commands(section: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut in_heredoc = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if in_heredoc {
            in_heredoc = line != "TOML";
            continue;
        }
        if line.starts_with("cat > dev.toml") {
            in_heredoc = true;
            continue;
        }
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// The heredoc: dev.toml as the README writes it.
fn dev_toml(section: &str) -> String {
    let marker = section.find("<<'TOML'").expect("the dev.toml heredoc");
    let start = marker + section[marker..].find('\n').expect("its first line") + 1;
    let len = section[start..].find("\nTOML\n").expect("its end");
    section[start..start + len].to_owned() + "\n"
}

#[tokio::test]
async fn the_sandbox_walkthrough_in_readme_answers_every_order_it_creates() {
    let section = section();
    let toml = dev_toml(&section);
    // Names of its own on what may be a shared broker, not the defaults.
    let dev = Settings::from_toml(&toml).expect("README's dev.toml loads");
    let defaults = Settings::from_toml("").unwrap();
    assert_ne!(dev.amqp.events_exchange, defaults.amqp.events_exchange);
    assert_ne!(dev.amqp.events_queue, defaults.amqp.events_queue);
    assert_ne!(dev.amqp.fulfilment_queue, defaults.amqp.fulfilment_queue);

    let lines = commands(&section);
    let find = |start: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no command starting {start:?} in {lines:#?}"))
            .clone()
    };
    let at = |start: &str| lines.iter().position(|l| l.starts_with(start)).unwrap();
    let (platform, relay, consumer, orders) = (
        "target/release/weibo-relay-tooling sandbox",
        "target/release/weibo-relay serve",
        "target/examples-venv/bin/python examples/python/consumer.py",
        "curl -s -XPOST localhost:9000/admin/orders",
    );
    assert!(
        at(platform) < at(relay) && at(relay) < at(consumer) && at(consumer) < at(orders),
        "the consumer must be started before the first order: {lines:#?}"
    );

    // Free ports and names of this run, the test's binary and venv.
    let free = weibo_relay_tooling::stage::spare_port;
    let (platform_port, relay_port) = (free(), free());
    let prefix = format!("test.{}.dev", uuid::Uuid::new_v4().simple());
    let adapt = |text: &str| {
        let mut text = text
            .replace(":9000", &format!(":{platform_port}"))
            .replace(":8080", &format!(":{relay_port}"));
        for name in ["events", "orders", "fulfilment", "shop"] {
            text = text.replace(&format!("dev.{name}"), &format!("{prefix}.{name}"));
        }
        text
    };
    let config = ConfigFile::with_text(&adapt(&toml)).unwrap();
    let settings = Settings::from_toml(&adapt(&toml)).unwrap();
    let _relay_queues = Teardown::new(&settings);
    let shop = [
        format!("{prefix}.shop.paid-orders"),
        format!("{prefix}.shop.outcomes"),
    ];
    let _shop_queues = queues_deleted_after(&[&shop[0], &shop[1]]);
    let python = python().to_str().unwrap().to_owned();
    let run = |line: &str| {
        let line = adapt(line)
            .replace("dev.toml", config.path().to_str().unwrap())
            .replace(
                "target/release/weibo-relay-tooling",
                tooling_bin().to_str().unwrap(),
            )
            .replace("target/release/weibo-relay", BIN)
            .replace("target/examples-venv/bin/python", &python);
        let mut command = Command::new("bash");
        command
            .args(["-c", &format!("exec {line}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RUST_LOG")
            .env("WEIBO_RELAY_LOG_FORMAT", "text");
        command
    };

    let sandbox = Example::start(run(&find(platform)));
    sandbox.wait_for("oauth_base = ", Duration::from_secs(10));
    let serve = Example::start(run(&find(relay)));
    let ready = format!("http://127.0.0.1:{relay_port}/readyz");
    eventually(Duration::from_secs(20), "the relay ready", || async {
        reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let reader = Example::start(run(&find(consumer)));
    reader.wait_for("ready: ", Duration::from_secs(20));
    let created = run(&find(orders)).output().unwrap();
    assert!(created.status.success(), "{created:?}");
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let ids: Vec<String> = created["sub_order_ids"]
        .as_array()
        .expect("the ids of the orders created")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{created}");
    let http = reqwest::Client::new();
    for id in &ids {
        let url = format!("http://127.0.0.1:{platform_port}/admin/orders/100023/{id}");
        eventually(Duration::from_secs(20), "every order final", || async {
            let state = http
                .get(&url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>();
            let state = state.await.unwrap()["state_code"].as_i64();
            matches!(state, Some(301 | 302))
        })
        .await;
    }
    drop((reader, serve, sandbox));
}
