//! The consumer examples (`examples/python`, `examples/node`) run as a person runs them,
//! against a real relay: a sandbox platform pushing every order change to a `weibo-relay
//! serve` process, the example a child process with names of this test's own. Every order
//! must end finished or closed at the platform, the example's summary must be exact, and its
//! commands must carry the events' trace. Duplicates are injected on purpose (an event copied
//! whole, the same order state under another id, an outcome copied) and must be skipped.
//!
//! The test installs what the examples need: a Python venv with pika under `target/`
//! (reused), and `npm ci` in `examples/node` (node_modules is git-ignored).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use weibo_relay::tooling::sandbox::{PushSchedule, PushSender, SandboxHandle, CLOSED, FINISHED};

use crate::helpers::*;

const ORDERS: usize = 20;
const CLOSE_EVERY: usize = 10;
/// What the example prints at the end: 2 copies of the first event and 1 of its outcome were
/// injected, every 10th order is closed.
const SUMMARY: &str =
    "summary: orders=20 finished=18 closed=2 failed=0 duplicate_events=2 duplicate_outcomes=1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory this test runs from (the test binary is in `<target>/.../deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Runs a set-up step; on failure, panics with what it printed and what to install.
fn run(what: &str, command: &mut Command, hint: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start it ({e}); {hint}"));
    assert!(
        out.status.success(),
        "{what} failed ({}); {hint}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<target>/examples-venv/bin/python` with examples/python/requirements.txt installed;
/// installs again only when the requirements change. Once per test process.
pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = target_dir().join("examples-venv");
        let python = venv.join("bin/python");
        let requirements = repo().join("examples/python/requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).unwrap();
        let stamp = venv.join("requirements.installed");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return python;
        }
        let hint = "the Python example needs python3 with venv (Debian: apt-get install python3-venv) and PyPI";
        if !python.exists() {
            run("python3 -m venv", Command::new("python3").arg("-m").arg("venv").arg(&venv), hint);
        }
        run(
            "pip install -r examples/python/requirements.txt",
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            hint,
        );
        std::fs::write(&stamp, wanted).unwrap();
        python
    })
}

/// examples/node with its locked dependencies installed (`npm ci` again only when the lock
/// changes). Once per test process.
fn node_example() -> &'static Path {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = repo().join("examples/node");
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
        let stamp = dir.join("node_modules/.installed-lock");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(lock.as_str()) {
            run(
                "npm ci in examples/node",
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir),
                "the Node example needs node >= 18 with npm (Debian: apt-get install nodejs npm) and the npm registry",
            );
            std::fs::write(&stamp, lock).unwrap();
        }
        dir
    })
}

/// Deletes the example's own queues when dropped, even when the test panicked.
/// The example as a child process, its output lines collected; killed when dropped.
pub(crate) struct Example {
    child: Option<std::process::Child>,
    kill: Option<KillOnDrop>,
    lines: mpsc::Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Example {
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let kill = KillOnDrop::new(child.id());
        let (tx, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (tx, seen) = (tx.clone(), seen.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child: Some(child),
            kill: Some(kill),
            lines,
            seen,
        }
    }

    pub(crate) fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }

    /// Waits for a line starting with `prefix`.
    pub(crate) fn wait_for(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the example printed no '{prefix}' line within {within:?}; it printed:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Waits for the exit; panics (the guard then kills it) when it takes longer than `within`.
    async fn exit(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Waited for: nothing left to kill (its pid may be reused).
                if let Some(kill) = self.kill.take() {
                    kill.disarm();
                }
                // Let the readers take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status, self.output());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the example did not finish within {within:?}; it printed:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn trace_id(headers: &Option<FieldTable>) -> Option<String> {
    match headers.as_ref()?.inner().get("traceparent")? {
        AMQPValue::LongString(s) => Some(s.to_string().split('-').nth(1)?.to_owned()),
        _ => None,
    }
}

/// Waits for the next message of `queue`.
async fn next(channel: &lapin::Channel, queue: &str) -> lapin::message::Delivery {
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

async fn final_state(sandbox: &SandboxHandle, id: &str) -> Option<u16> {
    let state = sandbox.order(APPID, id)?.state_code;
    (state == FINISHED || state == CLOSED).then_some(state)
}

/// The whole run for one example; `command` gets the example's options appended.
async fn prove(mut command: Command) {
    let started = Instant::now();
    let stage = platform_stage(test_settings(AMQP_URL)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_answers_every_order_once_against_a_real_relay() {
    let python = python();
    let mut command = Command::new(python);
    command.arg(repo().join("examples/python/consumer.py"));
    prove(command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_example_answers_every_order_once_against_a_real_relay() {
    let dir = node_example();
    let mut command = Command::new("node");
    command.arg(dir.join("consumer.js"));
    prove(command).await;
}
