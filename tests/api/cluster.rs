//! The broker as production runs it: a 3-node cluster losing the node the relay is on, and a
//! node that requires mutual TLS with a private CA. Both are started by
//! `tests/cluster/cluster.sh`, apart from the machine's own broker, and removed afterwards
//! even when a test fails.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weibo_relay::settings::{AmqpUrl, Certificates, PrivateKey};

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use serde_json::Value;
use weibo_relay::settings::Settings;

use crate::helpers::*;
use crate::rig::finish;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// Nodes started by the script; stopped and removed when dropped.
struct Nodes {
    dir: PathBuf,
    lines: BTreeMap<String, String>,
}

impl Nodes {
    /// Runs `cluster.sh <verb> DIR PORT`; panics with its stderr when it fails.
    fn start(verb: &str, port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wr-cluster-{}", uuid::Uuid::new_v4().simple()));
        let mut nodes = Self {
            dir,
            lines: BTreeMap::new(),
        };
        let out = Command::new("bash")
            .arg(script())
            .args([verb, nodes.dir.to_str().unwrap(), &port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nodes.lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        nodes
    }

    fn get(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .unwrap_or_else(|| panic!("cluster.sh printed no {key}: {:?}", self.lines))
    }

    fn node(&self, verb: &str, n: usize) {
        let out = Command::new("bash")
            .arg(script())
            .args([verb, self.dir.to_str().unwrap(), &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh {verb} {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Nodes {
    /// The node (1 to 3) leading quorum queue `queue`, as node 3 sees it.
    fn leader_of(&self, queue: &str) -> usize {
        let out = Command::new("bash")
            .arg(script())
            .args(["ctl", self.dir.to_str().unwrap(), "3"])
            .args(["list_queues", "name", "leader", "-q"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{queue}\twrc")))
            .and_then(|rest| rest[..1].parse().ok())
            .unwrap_or_else(|| panic!("no leader for {queue} in {text:?}"))
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

/// A base port for this run, below the ephemeral range, apart from other runs.
fn base_port(offset: u16) -> u16 {
    26000 + (std::process::id() % 300) as u16 * 20 + offset
}

/// The node (1 to 3) the relay says it is connected to now, from its log.
fn connected_node(logged: &[String], ports: &[u16]) -> Option<usize> {
    logged
        .iter()
        .rev()
        .find(|l| l.contains("broker connected"))
        .and_then(|l| {
            ports
                .iter()
                .position(|p| l.contains(&format!(":{p}/")))
                .map(|i| i + 1)
        })
}

/// Pushes a fresh order every 25 ms until stopped; every answer with its time.
struct PushStream {
    answers: Arc<Mutex<Vec<(Instant, u16, String)>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl PushStream {
    fn start(address: String) -> Self {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (a, s) = (answers.clone(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while !s.is_cancelled() {
                let (body, id) = valid_form_push();
                let status = client
                    .post(format!("http://{address}/weibo/push"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                a.lock().unwrap().push((Instant::now(), status, id));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Self { answers, stop }
    }

    /// The longest stretch from `since` in which no push was stored: between the answers of
    /// two consecutive 200s, whether the pushes between them were refused or kept waiting.
    fn longest_gap(&self, since: Instant) -> Duration {
        let answers = self.answers.lock().unwrap();
        let mut last = since;
        let mut longest = Duration::ZERO;
        for (at, _, _) in answers
            .iter()
            .filter(|(at, s, _)| *at >= since && *s == 200)
        {
            longest = longest.max(at.duration_since(last));
            last = *at;
        }
        longest
    }

    /// The most answers other than 200 in a row, from `since`.
    fn longest_refused_run(&self, since: Instant) -> usize {
        let answers = self.answers.lock().unwrap();
        let (mut run, mut longest) = (0, 0);
        for (_, status, _) in answers.iter().filter(|(at, _, _)| *at >= since) {
            run = if *status == 200 { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        longest
    }

    fn accepted(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s, _)| *s == 200)
            .map(|(_, _, id)| id.clone())
            .collect()
    }

    /// How many answers of each status since `since`.
    fn statuses_since(&self, since: Instant) -> BTreeMap<u16, usize> {
        let mut out = BTreeMap::new();
        for (_, s, _) in self
            .answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _, _)| *at >= since)
        {
            *out.entry(*s).or_default() += 1;
        }
        out
    }

    fn count_since(&self, since: Instant, status: u16) -> usize {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, s, _)| *at >= since && *s == status)
            .count()
    }
}

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
    let stage = platform_stage(settings).await;
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

/// Counts outcomes taken from `queue` into `got`; true once `want` were seen.
async fn got_outcomes(channel: &lapin::Channel, queue: &str, got: &mut usize, want: usize) -> bool {
    while let Ok(Some(m)) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
    {
        assert_eq!(m.delivery.routing_key.as_str(), "fulfilment.succeeded");
        *got += 1;
    }
    *got >= want
}

/// A receiver against the TLS node with `tls` settings: ready (and storing) or not.
async fn receiver_over_tls(settings: &Settings) -> (bool, Vec<String>) {
    let toml = relay_toml(settings);
    let mut relay = RelayProcess::start(BIN, "receiver", &toml, "info");
    let deadline = Instant::now() + Duration::from_secs(10);
    let url_ready = format!("http://{}/readyz", relay.address);
    let mut ready = false;
    // Ready, or refused (the relay logs each failed attempt), whichever comes first.
    while Instant::now() < deadline {
        if reqwest::get(&url_ready)
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        if relay
            .history()
            .iter()
            .any(|l| l.contains("broker connection failed"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = if ready {
        let (body, _) = valid_form_push();
        relay.post_form(body).await == 200
    } else {
        false
    };
    let (_, lines) = relay.signal("TERM").await;
    (ready && stored, lines)
}

#[tokio::test]
async fn a_broker_requiring_mutual_tls_with_a_private_ca_is_reached_with_the_right_files_only() {
    let port = base_port(10);
    let nodes = Nodes::start("start-tls", port);
    let url = nodes.get("tls");
    let (ca, cert, key) = (
        nodes.get("tls_ca"),
        nodes.get("tls_client_cert"),
        nodes.get("tls_client_key"),
    );
    let (other_ca, other_cert, other_key) = (
        nodes.get("tls_other_ca"),
        nodes.get("tls_other_client_cert"),
        nodes.get("tls_other_client_key"),
    );
    // The relay's settings for `url` with a CA file and, maybe, a client certificate and key.
    let files = |url: &str, ca: &str, cert: Option<&str>, key: Option<&str>| {
        let mut settings = test_settings(url);
        settings.amqp.tls_ca_file = Some(Certificates::read(ca).unwrap());
        settings.amqp.tls_cert_file = cert.map(|c| Certificates::read(c).unwrap());
        settings.amqp.tls_key_file = key.map(|k| PrivateKey::read(k).unwrap());
        settings
    };
    let good = files(url, ca, Some(cert), Some(key));
    let (ok, lines) = receiver_over_tls(&good).await;
    assert!(
        ok,
        "the right CA and client certificate:\n{}",
        lines.join("\n")
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("broker connected") && l.contains("amqps://")));
    // The certificate as the login, no password in the URL.
    let external = files(nodes.get("tls_external"), ca, Some(cert), Some(key));
    let (ok, lines) = receiver_over_tls(&external).await;
    assert!(ok, "EXTERNAL login:\n{}", lines.join("\n"));
    // The operator tools use the same files.
    let dir = std::env::temp_dir().join(format!("wr-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay.toml");
    std::fs::write(&config, relay_toml(&good)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    std::fs::write(&config, relay_toml(&files(url, ca, None, None))).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dlq list over TLS: {stderr}");
    assert!(stderr.starts_with("no dead letters in "), "{stderr}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the broker: amqps://"),
        "{stderr}"
    );
    for (case, tls) in [
        ("no client certificate", files(url, ca, None, None)),
        (
            "a certificate from another CA",
            files(url, ca, Some(other_cert), Some(other_key)),
        ),
        (
            "the broker's CA not trusted",
            files(url, other_ca, Some(cert), Some(key)),
        ),
    ] {
        let (ok, lines) = receiver_over_tls(&tls).await;
        assert!(!ok, "{case}: connected");
        assert!(
            lines.iter().any(|l| l.contains("broker connection failed")),
            "{case}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.iter().all(|l| !l.contains("BEGIN")),
            "{case}: key material logged"
        );
    }
    // Files that cannot work stop the start, naming the key.
    let mut cert_only = files(url, ca, Some(cert), None);
    cert_only.amqp.tls_ca_file = None;
    for (toml, expected) in [
        (
            relay_toml(&files(url, ca, Some(cert), Some(other_key))),
            "invalid configuration: amqp.tls_key_file: ",
        ),
        (
            relay_toml(&files(url, ca, None, None)).replace(ca, "/nonexistent/ca.pem"),
            "invalid configuration: amqp.tls_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            relay_toml(&cert_only),
            "invalid configuration: amqp.tls_key_file: is required with amqp.tls_cert_file",
        ),
    ] {
        // As the relay reads its file at start.
        let err = Settings::from_toml(&toml).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
        assert!(!err.contains("BEGIN"), "{err}");
    }
}
