//! The real binary: JSON logs, SIGTERM, and what never reaches its output.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weibo_relay::config::Settings;

use crate::helpers::*;

const SIGN_KEY_SECRET: &str = "S3cret-sign-key-0f9e";
const CLIENT_SECRET: &str = "S3cret-client-secret-77a1";
const PHONE: &str = "13812345678";
const CONTACT: &str = "13912345678";

#[tokio::test]
async fn the_binary_logs_json_masks_personal_data_hides_secrets_and_stops_on_sigterm() {
    let base = test_toml(AMQP_URL);
    let toml = format!(
        "{base}\n[[merchants]]\nappid = \"{APPID}\"\nsign_key = \"{SIGN_KEY_SECRET}\"\nclient_id = \"772915\"\nclient_secret = \"{CLIENT_SECRET}\"\nuid = \"1404376560\"\n"
    );
    let settings = Settings::from_toml(&toml).unwrap();
    let _topology = TopologyGuard(settings.amqp.clone());
    let dir = std::env::temp_dir().join(format!("wr-proc-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(&file, &toml).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["receiver", "--config"])
        .arg(&file)
        .env("WEIBO_RELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,weibo_relay=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);

    let mut lines = Vec::new();
    let address = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("relay logs 'listening'");
        lines.push(line.clone());
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if entry["message"] == "listening" {
            break entry["address"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let url = format!("http://{address}/readyz");
    eventually(Duration::from_secs(10), "relay ready", || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let data = order_data(&unique_order_id(), 201);
    assert!(data.contains(PHONE) && data.contains(CONTACT));
    let fields = signed_fields(APPID, SIGN_KEY_SECRET, "2", &data, now());
    let answer = client
        .post(format!("http://{address}/weibo/push"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM, got {exit:?}");
    lines.extend(rx.iter());
    std::fs::remove_dir_all(&dir).unwrap();

    let all = lines.join("\n");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    for secret in [
        SIGN_KEY_SECRET,
        CLIENT_SECRET,
        "guest:guest",
        PHONE,
        CONTACT,
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the log:\n{all}"
        );
    }
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
