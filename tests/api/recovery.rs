//! Nothing unrecoverable: order states no push brought are reconciled from the order list, the
//! event log keeps every event, and any part of it can be replayed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weibo_relay::settings::MaxAge;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use weibo_relay::event::replay::{replay, ReplayError, ReplayOptions};
use weibo_relay::startup::Roles;

use crate::helpers::*;
use crate::rig::{RigOptions, WorkerRig};

/// A `serve` whose sweeper runs every second and leaves the last `settle` seconds to pushes.
async fn serve_reconciling(settle: u64, list_page_cap: Option<u32>) -> WorkerRig {
    let faults = weibo_relay::tooling::sandbox::Faults {
        list_page_cap,
        ..Default::default()
    };
    WorkerRig::start_with(RigOptions {
        roles: Roles::Serve,
        faults,
        adjust: Box::new(move |s, _| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = settle.try_into().unwrap();
            s.reconcile.lookback_secs = 3600.try_into().unwrap();
        }),
        ..RigOptions::default()
    })
    .await
}

/// One event taken from a queue: (message_id, source header, body).
async fn take(app: &TestApp, queue: &str) -> Option<(String, String, Value)> {
    let got = app
        .channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()?;
    let p = &got.delivery.properties;
    let source = match p
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-weibo-source"))
    {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("no x-weibo-source: {other:?}"),
    };
    Some((
        p.message_id().as_ref().unwrap().to_string(),
        source,
        serde_json::from_slice(&got.delivery.data).unwrap(),
    ))
}

/// Every event in the events queue now.
async fn drain(app: &TestApp) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while let Some(event) = take(app, &tap_queue(&app.settings)).await {
        out.push(event);
    }
    out
}

fn reconciled_id(sub_order_id: &str, state: &str) -> String {
    hex::encode(
        &Sha256::digest(format!("{APPID}\nreconcile\n{sub_order_id}\n{state}").as_bytes())[..16],
    )
}

async fn metric(rig: &WorkerRig, name: &str) -> f64 {
    rig.metric(name)
        .await
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `n` more sweeps succeeded than now.
async fn sweeps(rig: &WorkerRig, n: f64) {
    let name = "weibo_relay_reconcile_sweeps_total{outcome=\"succeeded\"}";
    let before = metric(rig, name).await;
    eventually(Duration::from_secs(20), "sweeps", || async {
        metric(rig, name).await >= before + n
    })
    .await;
}

#[tokio::test]
async fn order_states_no_push_ever_brought_arrive_once_and_a_second_sweep_adds_nothing() {
    let rig = serve_reconciling(1, None).await;
    // The relay was down for every push of these orders: the platform gave up on them.
    let ids = rig.create_orders(6).await;
    eventually(Duration::from_secs(20), "six states reconciled", || async {
        rig.app.queue_depth().await >= 6
    })
    .await;
    sweeps(&rig, 2.0).await;
    let events = drain(&rig.app).await;
    assert_eq!(events.len(), 6, "{events:?}");
    let mut seen: Vec<&str> = Vec::new();
    for (message_id, source, body) in &events {
        let id = body["sub_order_id"].as_str().unwrap();
        assert_eq!(source, "reconcile");
        assert_eq!(message_id, &reconciled_id(id, "201"));
        assert_eq!(body["event_id"], message_id.as_str());
        assert_eq!(body["state_code"], 201);
        assert_eq!(body["params"], json!({}));
        assert_eq!(body["kind"], "sub_order");
        assert_eq!(body["data"]["sub_order_id"], id);
        assert!(body["data"]["update_time"].is_string(), "{body}");
        seen.push(id);
    }
    seen.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        metric(&rig, "weibo_relay_reconciled_events_total").await,
        6.0
    );
}

#[tokio::test]
async fn only_the_states_whose_pushes_were_lost_are_reconciled() {
    let rig = serve_reconciling(2, None).await;
    let ids = rig.create_orders(8).await;
    // The platform's pushes reach the relay for half of them.
    let (pushed, lost) = ids.split_at(4);
    for id in pushed {
        let data = json!({"sub_order_id": id, "state_code": 201}).to_string();
        rig.app
            .post_form(form(&signed_fields(APPID, SIGN_KEY, "2", &data, now())))
            .await
            .assert_success();
    }
    eventually(Duration::from_secs(20), "eight events", || async {
        rig.app.queue_depth().await >= 8
    })
    .await;
    sweeps(&rig, 2.0).await;
    let events = drain(&rig.app).await;
    assert_eq!(events.len(), 8, "{events:?}");
    let of = |source: &str| {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|(_, s, _)| s == source)
            .map(|(_, _, b)| b["sub_order_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(of("push"), pushed);
    assert_eq!(of("reconcile"), lost);
}

#[tokio::test]
async fn pages_are_followed_to_the_total_whatever_size_the_platform_caps_them_at() {
    let rig = serve_reconciling(1, Some(3)).await;
    rig.create_orders(10).await;
    eventually(Duration::from_secs(20), "ten states reconciled", || async {
        rig.app.queue_depth().await >= 10
    })
    .await;
    // Three more sweeps of both merchants (each counts once per merchant).
    sweeps(&rig, 6.0).await;
    assert_eq!(drain(&rig.app).await.len(), 10);
    // Each sweep asks for 100 rows a page, gets 3, and so asks for pages 1 to 4 of the ten
    // rows: never a fifth page, never one missed.
    let requests = rig
        .admin(reqwest::Method::GET, "/admin/requests", None)
        .await;
    let asked: Vec<(u64, String)> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == "retailerGetSubList" && r["params"]["appid"] == APPID)
        .map(|r| {
            let page = r["params"]["page"].as_str().unwrap().parse().unwrap();
            (page, r["params"]["page_size"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(asked.iter().all(|(_, size)| size == "100"), "{asked:?}");
    let pages: Vec<u64> = asked.iter().map(|(page, _)| *page).collect();
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for page in pages {
        if page == 1 || runs.is_empty() {
            runs.push(Vec::new());
        }
        runs.last_mut().unwrap().push(page);
    }
    // The last run may be in progress; the two before it began after the orders existed.
    assert!(runs.len() >= 3, "{runs:?}");
    let whole = &runs[runs.len() - 3..runs.len() - 1];
    assert!(whole.iter().all(|s| s == &[1, 2, 3, 4]), "{runs:?}");
}

#[tokio::test]
async fn a_failing_list_call_is_counted_and_the_next_sweep_recovers() {
    let rig = serve_reconciling(1, None).await;
    // Every list call fails for a while (HTTP 503), then the token is rejected once.
    rig.faults(json!({"error_rate": 1.0})).await;
    let ids = rig.create_orders(3).await;
    eventually(Duration::from_secs(20), "a failed sweep", || async {
        metric(
            &rig,
            "weibo_relay_reconcile_sweeps_total{outcome=\"failed\"}",
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(rig.app.queue_depth().await, 0);
    rig.faults(json!({})).await;
    rig.admin(
        reqwest::Method::POST,
        "/admin/tokens/revoke",
        Some(json!({"appid": APPID, "code": 21332})),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "three states reconciled",
        || async { rig.app.queue_depth().await >= 3 },
    )
    .await;
    assert_eq!(drain(&rig.app).await.len(), ids.len());
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 2);
    assert!(metric(&rig, "weibo_relay_reconcile_last_success_timestamp_seconds").await > 0.0);
}

#[tokio::test]
async fn two_serve_processes_reconcile_each_missing_state_once() {
    let mut settings = test_settings(AMQP_URL);
    settings.reconcile.interval_secs = 1.try_into().unwrap();
    settings.reconcile.settle_secs = 1.try_into().unwrap();
    let stage = platform_stage(settings).await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    let one = stage.spawn(BIN, "serve", "info");
    let two = stage.spawn(BIN, "serve", "info");
    one.wait_ready().await;
    two.wait_ready().await;
    let ids = sandbox.create_orders(APPID, 12);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let depth = || async {
        weibo_relay::amqp::topology::queue_depth(&conn, &tap_queue(settings))
            .await
            .unwrap()
            .expect("the tap")
    };
    eventually(Duration::from_secs(20), "twelve states", || async {
        depth().await >= 12
    })
    .await;
    // Three more sweeps' worth of time, by the clock of the leader's interval.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        assert!(depth().await <= 12);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut states = BTreeMap::new();
    while let Some(got) = channel
        .basic_get(
            tap_queue(settings).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
        *states
            .entry(body["sub_order_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(states.len(), ids.len(), "{states:?}");
    assert!(states.values().all(|n| *n == 1), "{states:?}");
    let _ = conn.close(200, "done".into()).await;
    one.signal("TERM").await;
    two.signal("TERM").await;
}

/// The relay is down (nothing listens on its address) while the platform pushes and gives
/// up; then it comes up on that address: every lost state arrives once, from reconciliation,
/// and a change after that arrives once, from its push.
#[tokio::test]
async fn states_pushed_while_the_relay_was_down_arrive_once_when_it_is_back() {
    use std::sync::atomic::Ordering;
    use weibo_relay::tooling::sandbox::{PushSchedule, PushSender};
    // An address nobody listens on, until the relay does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = test_settings(AMQP_URL);
    settings.http.bind = ([127, 0, 0, 1], port).into();
    settings.reconcile.interval_secs = 1.try_into().unwrap();
    settings.reconcile.settle_secs = 2.try_into().unwrap();
    let stage = platform_stage(settings).await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    // 1 min, 5 min, 15 min scaled down to 6, 30 and 90 ms: the platform gives up at once.
    let sender = PushSender::start(
        sandbox,
        format!("http://127.0.0.1:{port}{}", settings.push.path),
        PushSchedule::scaled(0.0001),
    );
    let lost = sandbox.create_orders(APPID, 5);
    eventually(Duration::from_secs(20), "every push given up", || async {
        sender.stats().gave_up.load(Ordering::Relaxed) == 5
    })
    .await;
    assert_eq!(sender.stats().accepted.load(Ordering::Relaxed), 0);

    let relay = stage.spawn(BIN, "serve", "info");
    assert_eq!(relay.address, format!("127.0.0.1:{port}"));
    relay.wait_ready().await;
    let pushed = sandbox.create_orders(APPID, 2);
    eventually(Duration::from_secs(20), "two pushes accepted", || async {
        sender.stats().accepted.load(Ordering::Relaxed) == 2
    })
    .await;
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Seven states in all; then two sweeps' worth of time in which nothing more may come.
    let settled = std::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_since: Option<std::time::Instant> = None;
    while quiet_since.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        assert!(std::time::Instant::now() < settled, "{events:?}");
        match channel
            .basic_get(
                tap_queue(settings).as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(got) => {
                let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
                let source = match got
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-weibo-source"))
                {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => panic!("no x-weibo-source: {other:?}"),
                };
                events
                    .entry(body["sub_order_id"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(source);
                if events.values().map(Vec::len).sum::<usize>() >= 7 {
                    quiet_since.get_or_insert_with(std::time::Instant::now);
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in &lost {
        expected.insert(id.clone(), vec!["reconcile".into()]);
    }
    for id in &pushed {
        expected.insert(id.clone(), vec!["push".into()]);
    }
    assert_eq!(events, expected);
    let _ = conn.close(200, "done".into()).await;
    sender.stop().await;
    relay.signal("TERM").await;
}

/// The event log is a stream with the configured retention: declaring it with that
/// `x-max-age` is accepted, with another one refused (PRECONDITION_FAILED).
#[tokio::test]
async fn the_event_log_is_a_stream_kept_for_event_log_max_age() {
    let mut settings = test_settings(AMQP_URL);
    settings.event_log.max_age = MaxAge::parse("3D").unwrap();
    let app = spawn_app_with(settings, true).await;
    let log = weibo_relay::amqp::Names::new(&app.settings.amqp)
        .event_log()
        .to_owned();
    let app = &app;
    let declare = |max_age: &'static str| {
        let log = log.clone();
        async move {
            let channel = app.connection().create_channel().await.unwrap();
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            args.insert("x-max-age".into(), AMQPValue::LongString(max_age.into()));
            let declared = channel
                .queue_declare(
                    log.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args,
                )
                .await;
            if declared.is_ok() {
                let _ = channel.close(200, "done".into()).await;
            }
            declared.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    assert_eq!(declare("3D").await, Ok(()));
    let refused = declare("7D").await.unwrap_err();
    assert!(
        refused.contains("PRECONDITION_FAILED") && refused.contains("x-max-age"),
        "{refused}"
    );
}

/// Waits until the clock is in a later second than `t`: events on either side have
/// `timestamp` properties on either side of it.
async fn next_second(t: SystemTime) -> SystemTime {
    let second = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    while second(SystemTime::now()) <= second(t) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    UNIX_EPOCH + Duration::from_secs(second(t) + 1)
}

/// Declares a queue to replay into, deleted when the returned guard goes (and by the broker
/// a minute after its last use, should the test process die).
#[must_use = "the queue is deleted when this is dropped"]
async fn declare_expiring(app: &TestApp, queue: &str) -> Teardown {
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    app.channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    queues_deleted_after(&[queue])
}

async fn push(app: &TestApp, appid: &str, key: &str, sub_order_id: &str, state: i64) {
    let data = order_data(sub_order_id, state);
    app.post_form(form(&signed_fields(appid, key, "2", &data, now())))
        .await
        .assert_success();
}

#[tokio::test]
async fn the_log_replays_by_window_appid_and_sub_order_into_a_queue_that_exists() {
    let app = spawn_app().await;
    let (a, b) = (unique_order_id(), unique_order_id());
    let started = SystemTime::now() - Duration::from_secs(1);
    push(&app, APPID, SIGN_KEY, &a, 201).await;
    push(&app, OTHER_APPID, OTHER_SIGN_KEY, &b, 201).await;
    let boundary = next_second(SystemTime::now()).await;
    push(&app, APPID, SIGN_KEY, &a, 301).await;
    // A queue of the test's own to replay into: another connection must see it, so not
    // exclusive; it expires a minute after the test, even one that panicked.
    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    let _target = declare_expiring(&app, &target).await;
    let options = |until: SystemTime, appid: Option<&str>, id: Option<&str>| ReplayOptions {
        since: started,
        until,
        appid: appid.map(|a| weibo_relay::ids::AppId::parse(a).unwrap()),
        sub_order_id: id.map(str::to_owned),
        routing_key: None,
        to_queue: target.clone(),
    };
    let far = SystemTime::now() + Duration::from_secs(60);
    let run = |o: ReplayOptions| {
        let settings = app.settings.clone();
        async move { replay(&settings, &o, |_| {}, &Default::default()).await }
    };
    let states = |events: Vec<(String, String, Value)>| -> Vec<(String, i64)> {
        events
            .iter()
            .map(|(_, _, b)| {
                (
                    b["sub_order_id"].as_str().unwrap().to_owned(),
                    b["state_code"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let replayed = |()| async {
        let mut out = Vec::new();
        while let Some(e) = take(&app, &target).await {
            out.push(e);
        }
        out
    };

    let all = run(options(far, None, None)).await.unwrap();
    assert_eq!(all.published, 3);
    let events = replayed(()).await;
    assert!(events.iter().all(|(_, s, _)| s == "push"), "headers kept");
    assert_eq!(
        states(events),
        [(a.clone(), 201), (b.clone(), 201), (a.clone(), 301)]
    );

    let window = run(options(boundary - Duration::from_millis(1), None, None))
        .await
        .unwrap();
    assert_eq!(window.published, 2);
    assert_eq!(
        states(replayed(()).await),
        [(a.clone(), 201), (b.clone(), 201)]
    );

    let other = run(options(far, Some(OTHER_APPID), None)).await.unwrap();
    assert_eq!(other.published, 1);
    assert_eq!(states(replayed(()).await), [(b.clone(), 201)]);

    let one_order = run(options(far, None, Some(&a))).await.unwrap();
    assert_eq!(one_order.published, 2);
    assert_eq!(
        states(replayed(()).await),
        [(a.clone(), 201), (a.clone(), 301)]
    );

    let missing = ReplayOptions {
        to_queue: format!("{target}.missing"),
        ..options(far, None, None)
    };
    let err = run(missing).await.unwrap_err();
    assert!(matches!(err, ReplayError::NoSuchQueue(_)), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn events_replay_as_an_operator_runs_it() {
    let app = spawn_app().await;
    let a = unique_order_id();
    push(&app, APPID, SIGN_KEY, &a, 201).await;
    push(&app, APPID, SIGN_KEY, &a, 301).await;
    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    let _target = declare_expiring(&app, &target).await;
    let config = ConfigFile::of(&app.settings).unwrap();
    let relay = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
            .args(args)
            .arg("--config")
            .arg(config.path())
            .output()
            .unwrap()
    };
    let out = relay(&[
        "events",
        "replay",
        "--since",
        "1h",
        "--sub-order-id",
        &a,
        "--to-queue",
        &target,
    ]);
    let missing = relay(&[
        "events",
        "replay",
        "--since",
        "1h",
        "--to-queue",
        "no.such.queue",
    ]);
    let _ = app
        .channel
        .queue_delete(target.as_str().into(), Default::default())
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("2 event(s) replayed to {target} (2 read from the log)")
    );
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("queue \"no.such.queue\" does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn events_tail_shows_each_new_event_on_a_line_of_its_own() {
    use std::io::{BufRead, BufReader};
    let app = spawn_app().await;
    let config = ConfigFile::of(&app.settings).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["events", "tail", "--appid", APPID, "--config"])
        .arg(config.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = crate::helpers::KillOnDrop::new(child.id());

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The tail reads from "next": push fresh orders (a repeated one would be a duplicate,
    // not published) until its first line shows it is reading.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut pushed = Vec::new();
    let first = loop {
        push(&app, OTHER_APPID, OTHER_SIGN_KEY, &unique_order_id(), 201).await;
        let a = unique_order_id();
        push(&app, APPID, SIGN_KEY, &a, 201).await;
        pushed.push(a);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
    };
    assert!(
        first.contains(" order.sub_order.201 appid=\"100023\" "),
        "{first}"
    );
    assert!(
        pushed
            .iter()
            .any(|a| first.contains(&format!("sub_order_id=\"{a}\""))),
        "{first}"
    );
    assert!(
        first.contains("state_code=201 source=push event_id="),
        "{first}"
    );
    assert!(
        !first.contains("13812345678"),
        "personal data shown: {first}"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    guard.disarm();
    assert!(status.success(), "{status:?}");
}

use std::process::Command;

/// A replay of more than the process could hold at once: 9,000 events of 8 KB (72 MB) are
/// re-fed one by one, confirmed, with progress lines on the way, while the process stays well
/// below the log's size in memory (measured: about 40 MB at peak for 48 MB and for 96 MB).
#[tokio::test]
async fn a_long_replay_says_how_far_it_got_and_keeps_its_memory_bounded() {
    use std::io::Read;
    const EVENTS: usize = 9000;
    let app = spawn_app().await;
    let log = weibo_relay::amqp::Names::new(&app.settings.amqp)
        .event_log()
        .to_owned();
    let channel = app.connection().create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let pad = "x".repeat(8 * 1024);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut confirms = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let body = json!({"event_id": format!("e{i}"), "appid": APPID, "sub_order_id": i.to_string(), "pad": pad});
        // As the relay writes them: sealed, or a replay would skip them.
        let entry = crate::log_entry::Entry::sealed(&app.settings, &format!("e{i}"), now)
            .body(body.to_string().into_bytes());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    log.as_str().into(),
                    Default::default(),
                    &entry.body,
                    entry.properties(&log),
                )
                .await
                .unwrap(),
        );
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    let _target = declare_expiring(&app, &target).await;
    let config = ConfigFile::of(&app.settings).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args([
            "events",
            "replay",
            "--since",
            "1h",
            "--to-queue",
            &target,
            "--config",
        ])
        .arg(config.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop::new(child.id());
    // The process's peak resident memory so far, as the kernel keeps it.
    let peak = |pid: u32| proc_status_kib(pid, "VmHWM");
    let mut peak_kib = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(kib) = peak(child.id()) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "replay still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    guard.disarm();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let depth = app.depth_of(&target).await;
    let _ = app
        .channel
        .queue_delete(target.as_str().into(), Default::default())
        .await;
    eprintln!("replay of {EVENTS} events of 8 KB: peak RSS {peak_kib} KiB; {stderr}");
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("{EVENTS} event(s) replayed to {target} ({EVENTS} read from the log)")
    );
    assert_eq!(depth as usize, EVENTS);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("replay: ") && l.ends_with(" read so far")),
        "no progress line: {stderr}"
    );
    // 72 MB went through; a reader holding it all would be above that.
    assert!(peak_kib < 56 * 1024, "peak RSS {peak_kib} KiB");
}
