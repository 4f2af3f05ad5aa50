//! A consumer that is not a relay on `<fulfilment_queue>.keeper`: the broker gives it the
//! single-active-consumer slot like any other, and while it holds it no relay leads. Real relay
//! processes report it (gauge, WARN line, `/readyz` 50302, `weibo-relay check`) within 15 s,
//! whether the stranger was there before they started or took the slot while they ran, and
//! stop reporting once it leaves and a relay leads again.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::Value;
use weibo_relay::amqp::{Names, Topology};
use weibo_relay::startup::Roles;

use crate::support::deployment::Deployment;
use crate::support::*;

const FOREIGN: &str = "weibo_relay_token_keeper_foreign_leader";
const ACTIVE: &str = "weibo_relay_token_keeper_active";

/// A consumer of the keeper queue that is not a relay, from the moment it consumes until it
/// leaves (or is dropped).
struct Stranger {
    connection: Connection,
    channel: Channel,
    task: tokio::task::JoinHandle<()>,
}

impl Stranger {
    /// Consumes `queue` (declaring the worker topology first, as a relay would, in case none
    /// ran yet), throwing away whatever it is given.
    async fn consume(d: &Deployment, queue: &str) -> Self {
        let connection = Connection::connect(
            AMQP_URL,
            ConnectionProperties::default().with_connection_name("stranger".into()),
        )
        .await
        .unwrap();
        Topology::for_roles(&Names::new(&d.settings.amqp), &d.settings, Roles::Worker)
            .declare(&connection)
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "not-a-relay".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let task = tokio::spawn(async move { while consumer.next().await.is_some() {} });
        Self {
            connection,
            channel,
            task,
        }
    }

    async fn leave(self) {
        let _ = self.channel.close(200, "leaving".into()).await;
        let _ = self.connection.close(200, "leaving".into()).await;
        self.task.abort();
    }
}

/// `/readyz` of worker `i`: status and body.
async fn readyz(d: &Deployment, i: usize) -> (u16, Value) {
    let answer = d
        .http
        .get(format!("http://{}/readyz", d.worker(i).address))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// Waits until every worker in `which` exports `name` = `value`; returns how long it took
/// from `since`.
async fn all_report(
    d: &Deployment,
    which: &[usize],
    name: &str,
    value: f64,
    since: Instant,
) -> Duration {
    for &i in which {
        let deadline = since + Duration::from_secs(15);
        while d.metric(i, name).await != value {
            assert!(
                Instant::now() < deadline,
                "worker {i}: {name} not {value} within 15 s; it logged:\n{}",
                d.worker(i).logged().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    since.elapsed()
}

/// Runs `weibo-relay check` with the deployment's configuration: (exit code, stdout).
async fn check(d: &Deployment) -> (Option<i32>, String) {
    let config = ConfigFile::of(&d.settings).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(config.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// The WARN line a worker logs when it reports a foreign leader, if it did.
fn foreign_line(lines: &[String], queue: &str) -> Option<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["level"] == "WARN"
                && l["queue"] == queue
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no relay leads"))
        })
}

#[tokio::test]
async fn a_stranger_on_the_keeper_queue_is_reported_within_15_s_and_a_relay_leads_once_it_goes() {
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    let queue = format!("{}.keeper", d.settings.amqp.fulfilment_queue);
    let api = crate::support::contract::OpenApi::load();

    // 1. The stranger holds the slot before any relay starts.
    let stranger = Stranger::consume(&d, &queue).await;
    let started = Instant::now();
    for _ in 0..2 {
        d.workers.push(Some(d.stage.spawn(BIN, "worker", "info")));
    }
    let took = all_report(&d, &[0, 1], FOREIGN, 1.0, started).await;
    eprintln!("a stranger there before the relays: reported after {took:?}");
    for i in [0, 1] {
        assert_eq!(d.metric(i, ACTIVE).await, 0.0);
        let (status, body) = readyz(&d, i).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], 50302, "{body}");
        let msg = body["msg"].as_str().unwrap();
        assert!(
            msg.contains(&queue) && msg.contains("not a weibo-relay"),
            "{msg}"
        );
        crate::support::contract::assert_answer(
            &api,
            "get",
            "/readyz",
            &Answer {
                status,
                body: body.to_string(),
            },
            None,
        );
    }
    let mut history = d.workers[0].as_mut().unwrap().history().to_vec();
    let warned = foreign_line(&history, &queue).expect("a WARN line naming the queue");
    assert!(
        warned["message"]
            .as_str()
            .unwrap()
            .contains("weibo-relay check"),
        "{warned}"
    );
    // The operator's check says the same, and exits non-zero.
    let (code, out) = check(&d).await;
    assert_eq!(code, Some(2), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("FAIL keeper queue {queue}: ")))
        .unwrap_or_else(|| panic!("no keeper line:\n{out}"));
    assert!(
        line.contains("consumer(s), none announces itself as a relay leader"),
        "{line}"
    );
    // Nobody asked the platform for a token meanwhile.
    assert_eq!(d.tokens_issued().await, 0);

    // 2. It leaves: a relay leads, the reports clear, every worker is ready.
    let left = Instant::now();
    stranger.leave().await;
    let leader = d.the_keeper(Duration::from_secs(10)).await;
    all_report(&d, &[0, 1], FOREIGN, 0.0, left).await;
    for i in [0, 1] {
        d.wait_ready(i).await;
    }
    eprintln!(
        "stranger gone: worker {leader} leads, reports cleared after {:?}",
        left.elapsed()
    );
    history = d.workers[1 - leader].as_mut().unwrap().history().to_vec();
    assert!(
        history
            .iter()
            .any(|l| l.contains("a relay leads the keeper queue again")),
        "{}",
        history.join("\n")
    );
    let (code, out) = check(&d).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("ok   keeper queue {queue}: "))
                && l.contains("a relay leads")),
        "{out}"
    );

    // 3. A stranger takes the slot while relays run: it queues up behind the leader, a third
    // relay behind it, and the leader dies.
    let follower = 1 - leader;
    d.kill(follower).await;
    let stranger = Stranger::consume(&d, &queue).await;
    d.workers.push(Some(d.stage.spawn(BIN, "worker", "info")));
    let late = d.workers.len() - 1;
    // Ready: it holds the leader's token (its hello was answered), so it runs for real.
    d.wait_ready(late).await;
    d.kill(leader).await;
    let killed = Instant::now();
    let took = all_report(&d, &[late], FOREIGN, 1.0, killed).await;
    eprintln!("a stranger taking the slot from a killed leader: reported after {took:?}");
    assert_eq!(d.metric(late, ACTIVE).await, 0.0);
    assert_eq!(readyz(&d, late).await.1["code"], 50302);

    stranger.leave().await;
    let left = Instant::now();
    assert_eq!(d.the_keeper(Duration::from_secs(10)).await, late);
    all_report(&d, &[late], FOREIGN, 0.0, left).await;
    d.wait_ready(late).await;
}
