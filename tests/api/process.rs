//! The real binary: JSON logs, SIGTERM, and what never reaches its output.

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
    let relay = RelayProcess::start("receiver", &toml, "info,weibo_relay=debug");
    let address = relay.address.clone();
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

    let (exit, lines) = relay.signal("TERM").await;
    assert!(exit.success(), "graceful exit on SIGTERM, got {exit:?}");

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
