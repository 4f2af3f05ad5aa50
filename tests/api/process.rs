//! The real binary: JSON logs, SIGTERM, and what never reaches its output.

use std::time::Duration;

use crate::support::*;

const SIGN_KEY_SECRET: &str = "S3cret-sign-key-0f9e";
const CLIENT_SECRET: &str = "S3cret-client-secret-77a1";
const PHONE: &str = "13812345678";
const CONTACT: &str = "13912345678";

#[tokio::test]
async fn the_binary_logs_json_masks_personal_data_hides_secrets_and_stops_on_sigterm() {
    let mut settings = test_settings(AMQP_URL);
    settings.merchants = secret_merchant();
    let stage = Harness::builder().base(settings).stage().await;
    let relay = stage.spawn(BIN, "receiver", "info,weibo_relay=debug");
    relay.wait_ready().await;

    let data = order_data(&unique_order_id(), 201);
    assert!(data.contains(PHONE) && data.contains(CONTACT));
    let fields = signed_fields(APPID, SIGN_KEY_SECRET, "2", &data, now());
    assert_eq!(relay.post_form(form(&fields)).await, 200);
    // A refusal names the merchant it claimed to come from (the event id only once verified).
    let forged = signed_fields(APPID, "not-the-sign-key-0123", "2", &data, now());
    assert_eq!(relay.post_form(form(&forged)).await, 401);

    let (exit, lines) = relay.signal("TERM").await;
    assert!(exit.success(), "graceful exit on SIGTERM, got {exit:?}");
    let refused: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "push refused")
        .expect("a refusal line");
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["appid"], APPID, "{refused}");
    assert_eq!(refused["event_id"], "-", "{refused}");

    let all = lines.join("\n");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert_no_secret_or_phone(&all);
    assert!(
        all.contains("138******78"),
        "masked account logged at debug:\n{all}"
    );
    assert!(
        all.contains("139******78"),
        "masked contact phone logged at debug:\n{all}"
    );
    assert!(
        all.contains("push stored") && all.contains("\"stopped\""),
        "{all}"
    );
}

/// The sign key, client secret, AMQP password and full phone numbers never reach the log.
/// The one merchant of these tests, with secrets the logs are searched for.
fn secret_merchant() -> weibo_relay::settings::Merchants {
    weibo_relay::settings::Merchants::new(vec![weibo_relay_tooling::stage::merchant(
        APPID,
        SIGN_KEY_SECRET,
        "772915",
        CLIENT_SECRET,
        "1404376560",
    )])
}

fn assert_no_secret_or_phone(log: &str) {
    for secret in [
        SIGN_KEY_SECRET,
        CLIENT_SECRET,
        "guest:guest",
        PHONE,
        CONTACT,
    ] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

/// True when `text` holds something shaped like a sandbox access token (`2.00` + 30 alnum).
fn contains_token(text: &str) -> bool {
    text.match_indices("2.00").any(|(i, _)| {
        let rest = &text[i + 4..];
        rest.len() >= 30 && rest.bytes().take(30).all(|b| b.is_ascii_alphanumeric())
    })
}

#[tokio::test]
async fn serve_at_debug_level_never_logs_secrets_tokens_or_phone_numbers() {
    let mut settings = test_settings(AMQP_URL);
    settings.merchants = secret_merchant();
    let stage = Harness::builder().base(settings).platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    let relay = stage.spawn(BIN, "serve", "debug");
    relay.wait_ready().await;

    let id = sandbox.create_orders(APPID, 1).remove(0);
    let data = order_data(&id, 201);
    let fields = signed_fields(APPID, SIGN_KEY_SECRET, "2", &data, now());
    assert_eq!(relay.post_form(form(&fields)).await, 200);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let command = serde_json::json!({"appid": APPID, "sub_order_id": id, "action": "close", "reason": "call 13700001111"});
    channel
        .basic_publish(
            "".into(),
            settings.amqp.fulfilment_queue.as_str().into(),
            Default::default(),
            command.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "order closed on the platform",
        || async {
            sandbox
                .order(APPID, &id)
                .is_some_and(|o| o.state_code == 302)
        },
    )
    .await;
    let _ = conn.close(200, "done".into()).await;

    let (exit, lines) = relay.signal("TERM").await;
    assert!(exit.success(), "{exit:?}");
    let all = lines.join("\n");
    assert!(
        all.contains("platform answered"),
        "the worker logged its call:\n{all}"
    );
    assert_no_secret_or_phone(&all);
    assert!(
        !contains_token(&all),
        "an access_token leaked into the debug log"
    );
}

#[tokio::test]
async fn sigterm_stops_the_relay_even_when_its_output_is_a_closed_pipe() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // As `weibo-relay receiver 2>&1 | head -1` leaves it: one line read, then nobody reads.
    let settings = test_settings(AMQP_URL);
    let _topology = Teardown::new(&settings);
    let config = ConfigFile::of(&settings).unwrap();
    let mut child = Command::new(BIN)
        .args(["receiver", "--config"])
        .arg(config.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop::new(child.id());
    // Read up to the line that names the address, then stop reading: every further log
    // line is a write to a closed pipe.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut address = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split(" address=").nth(1) {
            address = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    drop(reader);
    let address = address.expect("the relay logs the address it listens on");
    // Ready means the broker connection is up; debug level has logged it by then.
    eventually(Duration::from_secs(10), "ready", || async {
        reqwest::get(format!("http://{address}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10 s after SIGTERM with a closed stdout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    guard.disarm();
    assert!(status.success(), "{status:?}");
}
