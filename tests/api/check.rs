//! `weibo-relay check`: one line per check, exit 0 only when all pass, nothing changed,
//! no secret printed.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use weibo_relay::startup::Roles;

use crate::helpers::*;

/// Runs `weibo-relay check` on `toml` off the test's runtime, which serves the sandbox:
/// (exit code, stdout lines, stderr).
async fn check(toml: &str) -> (Option<i32>, Vec<String>, String) {
    let toml = toml.to_owned();
    tokio::task::spawn_blocking(move || check_blocking(&toml))
        .await
        .unwrap()
}

fn check_blocking(toml: &str) -> (Option<i32>, Vec<String>, String) {
    let config = ConfigFile::with_text(toml).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(config.path())
        .env_remove("WEIBO_RELAY_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout.lines().map(str::to_owned).collect();
    (
        out.status.code(),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// No sign key, client secret or AMQP password in what `check` printed.
fn assert_no_secret(text: &str) {
    for secret in [
        SIGN_KEY,
        OTHER_SIGN_KEY,
        "test-client-secret",
        "other-client-secret",
        "guest:guest",
    ] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

fn line<'a>(lines: &'a [String], start: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in {lines:#?}"))
}

#[tokio::test]
async fn check_passes_a_working_configuration_and_names_each_thing_that_would_fail() {
    let stage = platform_stage(test_settings(AMQP_URL)).await;
    let settings = stage.settings().clone();
    let toml = relay_toml(&settings);
    let amqp = &settings.amqp;

    // Before any relay ran: every queue absent, which is fine.
    let (code, lines, stderr) = check(&toml).await;
    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    assert_eq!(
        line(&lines, &format!("ok   queue {}: ", amqp.events_queue)),
        format!(
            "ok   queue {}: absent; the relay declares it at start",
            amqp.events_queue
        )
    );
    // Nothing was declared by checking.
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let probe = conn.create_channel().await.unwrap();
    assert!(probe
        .queue_declare(
            amqp.events_queue.as_str().into(),
            passive,
            FieldTable::default()
        )
        .await
        .is_err());
    let _ = conn.close(200, "probed".into()).await;
    let app = spawn_roles(settings.clone(), Roles::Serve, true).await;
    let (code, lines, _) = check(&toml).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines[0].starts_with("ok   configuration: loaded, 2 merchant(s)"));
    assert!(line(
        &lines,
        "ok   broker amqp://guest:[redacted]@127.0.0.1:5672/%2f: "
    )
    .contains("connected in"));
    for queue in [&amqp.events_queue, &amqp.fulfilment_queue] {
        assert_eq!(
            line(&lines, &format!("ok   queue {queue}: ")),
            format!("ok   queue {queue}: exists as the relay declares it")
        );
    }
    assert!(line(&lines, "ok   weibo.api_base 127.0.0.1: ").contains("answered HTTP"));
    assert!(line(&lines, "ok   merchant 100023: ").contains("no token requested"));
    assert_no_secret(&lines.join("\n"));

    // A delay queue someone declared by hand with other arguments (the old TTL trap), a
    // platform host (both bases) that does not resolve, a node that refuses, a client_id with letters.
    let delay = format!("{}.retry.5000ms", amqp.fulfilment_queue);
    app.channel
        .queue_delete(delay.as_str().into(), Default::default())
        .await
        .unwrap();
    let mut classic = FieldTable::default();
    classic.insert(
        "x-message-ttl".into(),
        lapin::types::AMQPValue::LongUInt(5000),
    );
    app.channel
        .queue_declare(
            delay.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            classic,
        )
        .await
        .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broken = settings.clone();
    broken.amqp.urls = vec![
        format!("amqp://guest:guest@127.0.0.1:{closed}/%2f").into(),
        AMQP_URL.to_owned().into(),
    ];
    broken.weibo.api_base = "https://nowhere.invalid/2/proxy/eshop/open".into();
    broken.weibo.oauth_base = "https://nowhere.invalid".into();
    broken.merchants = weibo_relay::config::Merchants::new(
        settings
            .merchants
            .iter()
            .map(|m| weibo_relay::config::Merchant {
                client_id: if m.appid == OTHER_APPID {
                    "77x916".into()
                } else {
                    m.client_id.clone()
                },
                ..m.clone()
            })
            .collect(),
    );
    let (code, lines, stderr) = check(&relay_toml(&broken)).await;
    assert_eq!(code, Some(2), "{lines:#?}");
    // A failing check names what failed, never a credential (the refusing node's URL too).
    assert_no_secret(&format!("{}\n{stderr}", lines.join("\n")));
    assert_eq!(
        stderr,
        format!("weibo-relay: 5 of {} checks failed\n", lines.len())
    );
    assert!(line(
        &lines,
        &format!("FAIL broker amqp://guest:[redacted]@127.0.0.1:{closed}/%2f: ")
    )
    .contains("Connection refused"));
    assert!(line(&lines, &format!("FAIL queue {delay}: ")).contains("the relay would not start"));
    for key in ["api_base", "oauth_base"] {
        assert!(line(&lines, &format!("FAIL weibo.{key} nowhere.invalid: "))
            .contains("does not resolve"));
    }
    assert_eq!(
        line(&lines, "FAIL merchant 200046: "),
        "FAIL merchant 200046: client_id is not a number of up to 20 digits"
    );
    // The other node, the other queues and the other merchant still pass.
    assert!(line(
        &lines,
        "ok   broker amqp://guest:[redacted]@127.0.0.1:5672/%2f"
    )
    .contains("connected"));
    assert!(line(&lines, &format!("ok   queue {}: ", amqp.events_queue)).contains("exists"));
    assert!(line(&lines, "ok   merchant 100023: ").contains("numbers"));
    drop(app);
}
