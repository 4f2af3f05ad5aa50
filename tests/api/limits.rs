//! Configuration that validates is configuration that runs: each value that used to pass
//! `check` and then hang, panic or be refused by the broker now stops the start with one line
//! naming the key, and the ranges end where the broker's own limits are.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use weibo_relay::settings::{BROKER_MAX_EXPIRY_MS, MAX_RETRY_MS};
use weibo_relay::startup::Roles;

use crate::support::*;

/// `weibo-relay ROLE --config FILE` with `env` set: (exit code, stderr, how long it took).
fn run(role: &str, config: &str, env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let child = Command::new(BIN)
        .args([role, "--config", config])
        .env_remove("WEIBO_RELAY_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A relay that starts after all (the old behaviour) is killed after 10 s: the exit code
    // is then not 2, and the test fails instead of hanging.
    let mut child = child;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The reproductions of the issue, each through the environment as an operator would set it:
/// `serve` (which hung, panicked or looped) and `check` (which said all was fine) both stop at
/// once with exit 2 and one line naming the key.
#[test]
fn each_setting_that_used_to_fail_after_the_start_stops_it_naming_the_key() {
    let good = ConfigFile::of(&test_settings(AMQP_URL)).unwrap();
    let good = good.path().to_str().unwrap();
    let huge = "9223372036854775807";
    for (var, value, key) in [
        (
            "WEIBO_RELAY__WORKER__CONCURRENCY",
            "0",
            "worker.concurrency",
        ),
        ("WEIBO_RELAY__WORKER__PREFETCH", "0", "worker.prefetch"),
        (
            "WEIBO_RELAY__RECONCILE__LOOKBACK_SECS",
            huge,
            "reconcile.lookback_secs",
        ),
        (
            "WEIBO_RELAY__WEIBO__RETRY_MAX_MS",
            huge,
            "weibo.retry_max_ms",
        ),
        (
            "WEIBO_RELAY__WEIBO__RETRY_BASE_MS",
            huge,
            "weibo.retry_base_ms",
        ),
        ("WEIBO_RELAY__HTTP__WORKERS", "513", "http.workers"),
        (
            "WEIBO_RELAY__HTTP__SHUTDOWN_TIMEOUT_SECS",
            huge,
            "http.shutdown_timeout_secs",
        ),
        (
            "WEIBO_RELAY__AMQP__HEARTBEAT_SECS",
            "0",
            "amqp.heartbeat_secs",
        ),
        (
            "WEIBO_RELAY__AMQP__RECONNECT_MAX_MS",
            huge,
            "amqp.reconnect_max_ms",
        ),
        (
            "WEIBO_RELAY__AMQP__TLS_CA_FILE",
            "/dev/zero",
            "amqp.tls_ca_file",
        ),
    ] {
        for role in ["serve", "check"] {
            let (code, stderr, took) = run(role, good, &[(var, value)]);
            assert_eq!(code, Some(2), "{role} {var}={value}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{role} {var}={value}: {stderr}");
            assert!(
                stderr.starts_with(&format!("weibo-relay: invalid configuration: {key}: ")),
                "{role} {var}={value}: {stderr}"
            );
            assert!(took < Duration::from_secs(5), "{role} {var}: {took:?}");
        }
    }
    // A configuration file that never ends is read up to 1 MiB, not without end.
    for role in ["serve", "check"] {
        let (code, stderr, took) = run(role, "/dev/zero", &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr,
            "weibo-relay: invalid configuration: /dev/zero is larger than 1024 KiB: not a configuration or PEM file\n"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

/// RabbitMQ's limit on a queue's `x-expires` (and `x-message-ttl`) is the one
/// `weibo.retry_max_ms` is held to: a delay queue at the largest delay accepted is declared,
/// one millisecond more is refused by the broker.
#[tokio::test]
async fn the_longest_retry_delay_accepted_is_the_longest_the_broker_takes() {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let name = |n: u64| format!("test.{}.expires-{n}", uuid::Uuid::new_v4().simple());
    let (at, over) = (name(BROKER_MAX_EXPIRY_MS), name(BROKER_MAX_EXPIRY_MS + 1));
    let _cleanup = queues_deleted_after(&[&at, &over]);
    let declare = |queue: String, expires: u64| {
        let conn = &conn;
        async move {
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            args.insert("x-expires".into(), AMQPValue::LongLongInt(expires as i64));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(expires as i64),
            );
            let channel = conn.create_channel().await.unwrap();
            let options = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue.as_str().into(), options, args)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    declare(at.clone(), BROKER_MAX_EXPIRY_MS).await.unwrap();
    let refused = declare(over.clone(), BROKER_MAX_EXPIRY_MS + 1)
        .await
        .unwrap_err();
    assert!(refused.contains("PRECONDITION_FAILED"), "{refused}");

    // A worker at the longest delay accepted declares its delay queue and connects.
    let mut settings = test_settings(AMQP_URL);
    settings.weibo.retry_base_ms = MAX_RETRY_MS.try_into().unwrap();
    settings.weibo.retry_max_ms = MAX_RETRY_MS.try_into().unwrap();
    settings.weibo.max_attempts = 2.try_into().unwrap();
    let app = Harness::builder()
        .base(settings)
        .roles(Roles::Worker)
        .start()
        .await;
    let delay = format!(
        "{}.retry.{MAX_RETRY_MS}ms",
        app.settings.amqp.fulfilment_queue
    );
    assert_eq!(app.depth_of(&delay).await, 0);
    let _ = conn.close(200, "done".into()).await;
}
