//! The event log trusts nothing it reads back: entries the relay did not seal (forged,
//! stamped 2^64-1 or a year ahead, sealed under another key, 2 MB of junk) neither hide a
//! state from reconciliation, nor end or crash a sweep, a replay or a tail, and are counted.

use std::time::Duration;

use serde_json::json;
use weibo_relay::startup::Roles;

use crate::support::log_entry::{a_year_ahead, append, Entry};
use crate::support::rig::WorkerRig;
use crate::support::*;

async fn metric(rig: &WorkerRig, name: &str) -> f64 {
    let line = rig.metric(name).await;
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The issue's forgeries, each on its own a way to stop or fool the sweep before: an entry
/// stamped 2^64-1 (a panic, the sweeper gone for good), one a year ahead (the reading
/// ended there, and every sweep published the same states again), a plausible body naming
/// a lost state (reconciliation of it suppressed), one sealed under another key, and 2 MB
/// of junk. Now: each lost state is reconciled once, every sweep succeeds, nothing is
/// published twice, the sweeper never restarts, and the skipped entries are counted.
#[tokio::test]
async fn forged_log_entries_neither_hide_a_state_nor_stop_nor_repeat_a_sweep() {
    let rig = Harness::builder()
        .roles(Roles::Serve)
        .settings(|s| {
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 2.try_into().unwrap();
            s.reconcile.lookback_secs = 3600.try_into().unwrap();
        })
        .rig()
        .await;
    let ids = rig.create_orders(6).await;
    let names =
        |id: &str| json!({"appid": APPID, "sub_order_id": id, "state_code": 201}).to_string();
    let now = weibo_relay::clock::unix_secs();
    let forgeries = [
        Entry::forged("f1", u64::MAX).body(names(&ids[0])),
        Entry::forged("f2", a_year_ahead()).body(names(&ids[1])),
        Entry::forged("f3", now).body(names(&ids[2])),
        Entry::sealed_by_a_stranger("f4", now).body(names(&ids[3])),
        Entry::forged("f5", now).body(vec![b' '; 2 << 20]),
    ];
    for forged in &forgeries {
        append(&rig.app, None, forged).await;
    }
    let succeeded = "weibo_relay_reconcile_sweeps_total{outcome=\"succeeded\"}";
    eventually(Duration::from_secs(30), "six states reconciled", || async {
        rig.app.queue_depth().await >= 6
    })
    .await;
    // Three more sweeps of both merchants, each reading the forgeries again.
    let after = metric(&rig, succeeded).await;
    eventually(Duration::from_secs(20), "three more sweeps", || async {
        metric(&rig, succeeded).await >= after + 6.0
    })
    .await;
    let mut reconciled = Vec::new();
    while let Some(got) = rig
        .app
        .channel
        .basic_get(
            weibo_relay_tooling::stage::tap_queue(&rig.app.settings)
                .as_str()
                .into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let body: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
        reconciled.push(body["sub_order_id"].as_str().unwrap().to_owned());
    }
    reconciled.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(reconciled, expected, "each lost state once, none hidden");
    assert_eq!(
        metric(&rig, "weibo_relay_reconciled_events_total").await,
        6.0
    );
    assert_eq!(
        metric(
            &rig,
            "weibo_relay_reconcile_sweeps_total{outcome=\"failed\"}"
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(&rig, "weibo_relay_task_restarts_total{task=\"sweeper\"}").await,
        0.0
    );
    // Every sweep reads the log again, and skips the same five again.
    let skipped = |reason: &'static str| {
        let rig = &rig;
        async move {
            metric(
                rig,
                &format!("weibo_relay_reconcile_log_entries_skipped_total{{reason=\"{reason}\"}}"),
            )
            .await
        }
    };
    assert!(skipped("unsealed").await >= 4.0 * 3.0);
    assert!(skipped("oversized").await >= 3.0);
}

async fn push(app: &TestApp, sub_order_id: &str, state: i64) {
    // Through serde, so an id with control characters is still JSON.
    let data =
        json!({"sub_order_id": sub_order_id, "state_code": state, "contact_phone": "13912345678"})
            .to_string();
    app.post_form(form(&signed_fields(APPID, SIGN_KEY, "2", &data, now())))
        .await
        .assert_success();
}

fn relay(config: &ConfigFile, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config.path())
        .output()
        .unwrap()
}

/// Six genuine events with forgeries between them, one stamped a year ahead (which used to
/// end the replay after 3, exit 0) and one 2^64-1 (a panic, exit 101): all six replayed,
/// the two forgeries skipped and said; and a `--since` no clock can reach back to is a
/// one-line refusal, exit 2.
#[tokio::test]
async fn events_replay_replays_every_genuine_event_past_forged_times_and_says_what_it_skipped() {
    let app = Harness::builder().start().await;
    let ids: Vec<String> = (0..3).map(|_| unique_order_id()).collect();
    for id in &ids {
        push(&app, id, 201).await;
    }
    append(&app, None, &Entry::forged("f1", a_year_ahead())).await;
    append(&app, None, &Entry::forged("f2", u64::MAX)).await;
    for id in &ids {
        push(&app, id, 301).await;
    }
    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    app.channel
        .queue_declare(
            target.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let _target = queues_deleted_after(&[&target]);
    let config = ConfigFile::of(&app.settings).unwrap();
    let out = relay(
        &config,
        &["events", "replay", "--since", "1h", "--to-queue", &target],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("6 event(s) replayed to {target} (6 read from the log; 2 entries skipped: not sealed by this deployment)")
    );
    assert_eq!(app.depth_of(&target).await, 6);

    let far = relay(
        &config,
        &[
            "events",
            "replay",
            "--since",
            "300000000000years",
            "--to-queue",
            &target,
        ],
    );
    let stderr = String::from_utf8_lossy(&far.stderr);
    assert_eq!(far.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--since 300000000000years reaches back before"),
        "{stderr}"
    );
    assert_eq!(app.depth_of(&target).await, 6, "nothing replayed");
}

/// `events tail` while the log receives a forgery stamped 2^64-1 (a panic before), a push
/// whose sub order id holds ESC, NUL and a newline, and an entry sealed with the
/// deployment's keys whose routing key and source do (nothing the relay writes today, but
/// a line must not depend on that): every line printed is one line with no control
/// character, and the forgery is counted when the tail ends.
#[tokio::test]
async fn events_tail_survives_forgeries_and_escapes_everything_it_did_not_write() {
    use std::io::{BufRead, BufReader};
    let app = Harness::builder().start().await;
    let config = ConfigFile::of(&app.settings).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["events", "tail", "--config"])
        .arg(config.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop::new(child.id());
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    // The tail reads from "next": write until a line shows it is reading.
    let hostile_id = "a\u{1b}[31m\u{0}b\nc";
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lines.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail printed nothing (did it die?)"
        );
        append(&app, None, &Entry::forged("f1", u64::MAX)).await;
        push(&app, &format!("{hostile_id}{}", unique_order_id()), 201).await;
        lines.extend(rx.recv_timeout(Duration::from_millis(200)));
    }
    // The forgeries above may all have been written before the tail attached: one more, now
    // that it is certainly reading, so the skip below does not depend on that timing.
    append(&app, None, &Entry::forged("f2", u64::MAX)).await;
    let sealed = Entry::sealed(&app.settings, "s1", now() as u64)
        .source("push\u{0}\r\n2026-01-01T00:00:00Z order.sub_order.301 appid=\"100023\"")
        .body(
            json!({"appid": APPID, "sub_order_id": "42", "state_code": 201, "event_id": "s1"})
                .to_string(),
        );
    append(&app, Some("order.\u{1b}[2J.201\nfake"), &sealed).await;
    push(&app, &unique_order_id(), 301).await;
    while !lines
        .iter()
        .any(|l: &String| l.contains(" state_code=301 "))
    {
        lines.push(rx.recv_timeout(Duration::from_secs(10)).expect("a line"));
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    guard.disarm();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in &lines {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    let hostile = lines
        .iter()
        .find(|l| l.contains("fake"))
        .expect("the sealed entry's line");
    assert!(
        hostile.contains(r#" "order.\u{1b}[2J.201\nfake" "#),
        "{hostile}"
    );
    assert!(hostile.contains(r#"source="push\0\r\n2026"#), "{hostile}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"sub_order_id="a\u{1b}[31m\0b\nc"#)),
        "{lines:?}"
    );
    assert!(
        stderr.contains("tail: skipping entries of the log this deployment did not seal"),
        "{stderr}"
    );
    assert!(
        stderr.contains("entries skipped: not sealed by this deployment"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

use std::process::Command;
