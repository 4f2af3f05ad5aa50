//! `events replay` and `events tail` as an operator runs them.

use super::support::*;
use crate::support::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn events_replay_as_an_operator_runs_it() {
    let app = Harness::builder().start().await;
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
    let app = Harness::builder().start().await;
    let config = ConfigFile::of(&app.settings).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["events", "tail", "--appid", APPID, "--config"])
        .arg(config.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = crate::support::KillOnDrop::new(child.id());

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

/// A replay of more than the process could hold at once: 9,000 events of 8 KB (72 MB) are
/// re-fed one by one, confirmed, with progress lines on the way, while the process stays well
/// below the log's size in memory (measured: about 40 MB at peak for 48 MB and for 96 MB).
#[tokio::test]
async fn a_long_replay_says_how_far_it_got_and_keeps_its_memory_bounded() {
    use std::io::Read;
    const EVENTS: usize = 9000;
    let app = Harness::builder().start().await;
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
        let entry = crate::support::log_entry::Entry::sealed(&app.settings, &format!("e{i}"), now)
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
