//! `weibo-relay check`: one line per check, exit 0 only when all pass, nothing changed,
//! no secret printed.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use weibo_relay::settings::AmqpUrl;
use weibo_relay::startup::Roles;

use crate::support::*;

/// Runs `weibo-relay check` on `toml` off the test's runtime, which serves the sandbox:
/// (exit code, stdout lines, stderr).
pub(crate) async fn check(toml: &str) -> (Option<i32>, Vec<String>, String) {
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

pub(crate) fn line<'a>(lines: &'a [String], start: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in {lines:#?}"))
}

#[tokio::test]
async fn check_passes_a_working_configuration_and_names_each_thing_that_would_fail() {
    let stage = Harness::builder().platform().stage().await;
    let settings = stage.settings().clone();
    let toml = relay_toml(&settings);
    let amqp = &settings.amqp;

    let log = weibo_relay::amqp::Names::new(amqp).event_log().to_owned();
    // Before any relay ran: every queue absent, which is fine.
    let (code, lines, stderr) = check(&toml).await;
    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    assert_eq!(
        line(&lines, &format!("ok   queue {log}: ")),
        format!("ok   queue {log}: absent; the relay declares it at start")
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
        .queue_declare(log.as_str().into(), passive, FieldTable::default())
        .await
        .is_err());
    let _ = conn.close(200, "probed".into()).await;
    let app = Harness::builder()
        .base(settings.clone())
        .roles(Roles::Serve)
        .start()
        .await;
    let (code, lines, _) = check(&toml).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines[0].starts_with("ok   configuration: loaded, 2 merchant(s)"));
    assert!(line(
        &lines,
        "ok   broker amqp://guest:[redacted]@127.0.0.1:5672/%2f: "
    )
    .contains("connected in"));
    for queue in [&log, &amqp.fulfilment_queue] {
        assert_eq!(
            line(&lines, &format!("ok   queue {queue}: ")),
            format!("ok   queue {queue}: exists as the relay declares it")
        );
    }
    assert!(line(&lines, "ok   weibo.api_base 127.0.0.1: ").contains("answered HTTP"));
    assert!(line(&lines, "ok   merchant 100023: ").contains("no token requested"));
    // The relay declares no queue named events_queue, so check has nothing to say of one.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&format!("queue {}:", amqp.events_queue))),
        "{lines:#?}"
    );
    assert_no_secret(&lines.join("\n"));

    // A delay queue someone declared by hand with other arguments (the old TTL trap), a
    // platform host (both bases) that does not resolve, a node that refuses.
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
        AmqpUrl::parse(&format!("amqp://guest:guest@127.0.0.1:{closed}/%2f")).unwrap(),
        AmqpUrl::parse(AMQP_URL).unwrap(),
    ];
    broken.weibo.api_base = "https://nowhere.invalid/2/proxy/eshop/open"
        .parse()
        .unwrap();
    broken.weibo.oauth_base = "https://nowhere.invalid".parse().unwrap();
    let (code, lines, stderr) = check(&relay_toml(&broken)).await;
    assert_eq!(code, Some(2), "{lines:#?}");
    // A failing check names what failed, never a credential (the refusing node's URL too).
    assert_no_secret(&format!("{}\n{stderr}", lines.join("\n")));
    assert_eq!(
        stderr,
        format!("weibo-relay: 4 of {} checks failed\n", lines.len())
    );
    assert_eq!(
        line(
            &lines,
            &format!("FAIL broker amqp://guest:[redacted]@127.0.0.1:{closed}/%2f: ")
        ),
        format!("FAIL broker amqp://guest:[redacted]@127.0.0.1:{closed}/%2f: nothing listens at 127.0.0.1:{closed} (Connection refused (os error 111))")
    );
    assert!(line(&lines, &format!("FAIL queue {delay}: ")).contains("the relay would not start"));
    for key in ["api_base", "oauth_base"] {
        assert!(line(&lines, &format!("FAIL weibo.{key} nowhere.invalid: "))
            .contains("does not resolve"));
    }
    // The other node, the other queues and the merchants still pass.
    assert!(line(
        &lines,
        "ok   broker amqp://guest:[redacted]@127.0.0.1:5672/%2f"
    )
    .contains("connected"));
    assert!(line(&lines, &format!("ok   queue {log}: ")).contains("exists"));
    for appid in [APPID, OTHER_APPID] {
        assert!(line(&lines, &format!("ok   merchant {appid}: ")).contains("numbers"));
    }
    drop(app);
}

/// Runs `weibo-relay ROLE` on `toml` until it exits (at most 10 s): (exit code, stderr).
fn run_role(role: &str, toml: &str) -> (Option<i32>, String) {
    let config = ConfigFile::with_text(toml).unwrap();
    let child = std::process::Command::new(BIN)
        .args([role, "--config"])
        .arg(config.path())
        .env_remove("WEIBO_RELAY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop::new(child.id());
    let out = child.wait_with_output().unwrap();
    guard.disarm();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

/// One rule for both: a uid that is not a number, and no merchant at all, stop `serve` at
/// once with one line, and `check` fails them in the same words.
#[tokio::test]
async fn check_and_serve_refuse_the_same_merchants() {
    let stage = Harness::builder().platform().stage().await;
    // The other merchant's uid in letters, as an operator's file could give it.
    let toml = relay_toml(stage.settings()).replace("uid = \"1404376561\"", "uid = \"abc\"");
    assert!(toml.contains("uid = \"abc\""), "{toml}");
    let refused = "weibo-relay: invalid configuration: merchants[1].uid: must be a number of 1 to 20 digits, as the platform gives it\n";
    for role in ["check", "serve"] {
        let toml = toml.clone();
        let (code, stderr) = tokio::task::spawn_blocking(move || run_role(role, &toml))
            .await
            .unwrap();
        assert_eq!((code, stderr.as_str()), (Some(2), refused), "{role}");
    }

    let mut none = stage.settings().clone();
    none.merchants = weibo_relay::settings::Merchants::default();
    let toml = relay_toml(&none);
    let (code, lines, stderr) = check(&toml).await;
    assert_eq!(code, Some(2), "{lines:#?}");
    assert_eq!(
        lines[0],
        "FAIL configuration: merchants: at least one [[merchants]] entry is required (or a [provider] section): serve, receiver and worker refuse to start"
    );
    assert_eq!(
        stderr,
        format!("weibo-relay: 1 of {} checks failed\n", lines.len())
    );
    let (code, stderr) = tokio::task::spawn_blocking(move || run_role("serve", &toml))
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "weibo-relay: invalid configuration: merchants: at least one [[merchants]] entry is required (or a [provider] section)\n"
    );
}

/// Each gateway client's first allowed read is tried without a token: a row the platform has
/// passes, a row it does not (a wrong catalogue entry) fails, a client with no read is a note;
/// no token is requested and no client key exists to print.
#[tokio::test]
async fn check_tries_each_gateway_clients_first_read_without_a_token() {
    use weibo_relay::settings::{GatewayClient, InterfaceSpec, KeyHash, PlatformMethod};
    let stage = Harness::builder().platform().stage().await;
    let mut settings = stage.settings().clone();
    crate::support::gateway::with_gateway(&mut settings);
    settings.gateway.interfaces.insert(
        "goods/getNothingHere".into(),
        InterfaceSpec {
            method: PlatformMethod::Get,
            writes: false,
            commands: true,
        },
    );
    let only = |name: &str, interface: &str| GatewayClient {
        merchants: false,
        name: name.into(),
        key_sha256: KeyHash::of(name),
        interfaces: vec![interface.into()],
        appids: vec!["*".into()],
        rate_limit_per_sec: 1.try_into().unwrap(),
    };
    settings
        .gateway
        .clients
        .push(only("wrong-row", "goods/getNothingHere"));
    settings
        .gateway
        .clients
        .push(only("writer", "goods/setGoodsStockSkuid"));
    let (code, lines, stderr) = check(&relay_toml(&settings)).await;
    assert_eq!(code, Some(2), "{lines:#?}\n{stderr}");
    assert!(
        line(&lines, "ok   gateway client all: ").contains("goods/getAllCateData answered code"),
        "{lines:#?}"
    );
    assert!(line(&lines, "ok   gateway client stock: ").contains("goods/getGoodsInfo"));
    assert!(line(&lines, "FAIL gateway client wrong-row: ").contains("HTTP 404"));
    line(
        &lines,
        "note gateway client writer: no read interface allowed",
    );
    let counters: serde_json::Value =
        reqwest::get(format!("{}/admin/counters", stage.sandbox().base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        counters["tokens_issued"],
        serde_json::json!({}),
        "{counters}"
    );
    assert_eq!(
        counters["received"]["setGoodsStockSkuid"],
        serde_json::Value::Null
    );
    stage.stop().await;
}
