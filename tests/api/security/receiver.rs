//! The receiver against slow clients, padded replays and names made to forge the log.

use super::support::*;
use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_slow_client_flood_is_bounded_in_memory_and_pushes_still_get_through() {
    const CLIENTS: usize = 600;
    const MAX_CONNECTIONS: usize = 200;
    let mut settings = test_settings(AMQP_URL);
    settings.http.max_body_bytes = 65536.try_into().unwrap();
    settings.http.body_timeout_ms = 3000.try_into().unwrap();
    settings.http.max_connections = (MAX_CONNECTIONS as u64).try_into().unwrap();
    let stage = Harness::builder().base(settings).stage().await;
    let relay = stage.spawn(BIN, "receiver", "info");
    relay.wait_ready().await;
    let pid = relay.pid();
    let before = rss_kib(pid);

    let flood: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(slow_client(relay.address.clone(), 65_536, 65_000)))
        .collect();
    let streams: Vec<_> = futures_util::future::join_all(flood).await;
    let connected = streams.iter().filter(|s| matches!(s, Ok(Some(_)))).count();
    // A legitimate push while the flood holds every connection the relay serves and 400 more
    // wait behind it: it waits its turn (each slow client is cut off after the body timeout)
    // and is answered; it is neither refused nor lost.
    let started = Instant::now();
    let address = relay.address.clone();
    let push = tokio::spawn(async move {
        let (body, _) = valid_form_push();
        reqwest::Client::new()
            .post(format!("http://{address}/weibo/push"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let mut peak = rss_kib(pid);
    while !push.is_finished() && started.elapsed() < Duration::from_secs(30) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = push.await.unwrap().unwrap();
    let waited = started.elapsed();
    drop(streams);
    // Once the flood is gone, the memory it used goes back to the system, with no traffic.
    let mut after = rss_kib(pid);
    let settle_until = Instant::now() + Duration::from_secs(20);
    while after > before + 8 * 1024 && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = rss_kib(pid);
    }
    eprintln!(
        "slow-client flood: {connected} connected; RSS before {before} KiB, peak {peak} KiB, after {after} KiB; push answered {status} after {waited:?}"
    );
    let (_, lines) = relay.signal("TERM").await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(connected, CLIENTS);
    // Three rounds of 200 slow clients, 3 s each, at most, are ahead of it.
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    // Each served connection holds about one body (64 KiB) and actix's buffers (together under
    // 256 KiB in this debug build): the cap bounds it, and the 400 waiting cost nothing here.
    assert!(
        peak < before + (MAX_CONNECTIONS as u64) * 256,
        "peak {peak} KiB from {before} KiB"
    );
    assert!(
        after <= before + 8 * 1024,
        "after {after} KiB from {before} KiB"
    );
}

#[tokio::test]
async fn padded_and_extended_replays_are_published_once_with_exactly_the_signed_params() {
    let data = order_data(&unique_order_id(), 201);
    let original = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    let replays: Vec<Vec<(String, String)>> = vec![
        original.clone(),
        with_field(&original, "data", &format!("{data}  \n")),
        with_field(
            &original,
            "access_token",
            "2.00attackers-own-token-000000000",
        ),
        with_field(&original, "remark", ""),
        with_field(
            &with_field(
                &original,
                "nonce",
                &format!(" {}\t", field(&original, "nonce")),
            ),
            "access_token",
            "x",
        ),
    ];
    let event_id = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(format!("{APPID}\n2\n{data}").as_bytes())[..16])
    };
    let signed_params: serde_json::Map<String, serde_json::Value> = original
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();

    // With the in-process dedup: one message.
    let app = Harness::builder().start().await;
    for fields in &replays {
        app.post_form(form(fields)).await.assert_success();
    }
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"duplicate\"} 4"),
        "{metrics}"
    );
    let msg = app.next_event().await;
    assert_eq!(app.queue_depth().await, 0);
    let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(
        body["params"],
        serde_json::Value::Object(signed_params.clone())
    );
    assert_eq!(body["event_id"], event_id);

    // Without it (another replica, a restart): every copy carries the same id and the same
    // params, so consumers deduplicating on message_id see one event.
    let mut settings = test_settings(AMQP_URL);
    settings.push.dedup_capacity = 0.try_into().unwrap();
    let app = Harness::builder().base(settings).start().await;
    for fields in &replays {
        app.post_form(form(fields)).await.assert_success();
    }
    for _ in &replays {
        let msg = app.next_event().await;
        assert_eq!(
            msg.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str()),
            Some(event_id.as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
        assert_eq!(
            body["params"],
            serde_json::Value::Object(signed_params.clone())
        );
        assert!(!String::from_utf8_lossy(&msg.delivery.data).contains("attacker"));
    }
}

#[tokio::test]
async fn names_from_a_request_cannot_forge_flood_or_colour_the_log() {
    let mut settings = test_settings(AMQP_URL);
    settings.http.max_body_bytes = 65536.try_into().unwrap();
    let stage = Harness::builder().base(settings).stage().await;
    // Text logs: the format a forged line would fool.
    let toml = relay_toml(stage.settings());
    let relay = RelayProcess::start_logging(BIN, "receiver", &toml, "info", false);
    relay.wait_ready().await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("http://{}/weibo/push", relay.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let long = "k".repeat(30_000);
    for key in [
        "a%0A2026-11-25T00:00:00Z  INFO forged: push stored",
        "%1B%5B31mred%1B%5B0m",
        long.as_str(),
    ] {
        let answer = post(format!("{key}=1&{key}=2")).await.unwrap();
        assert_eq!(answer.status(), 400);
        let body = answer.text().await.unwrap();
        assert!(body.len() < 300, "{} bytes", body.len());
        assert!(body.contains("is given twice"), "{body}");
        assert!(!body.contains('\n') && !body.contains('\u{1b}'), "{body}");
    }
    // Values a parser quotes back: a JSON body of the wrong type, a `data` that is not JSON.
    let json_string = format!("\"{}\\n\u{1b}[31m\"", "v".repeat(60_000));
    let answer = client
        .post(format!("http://{}/weibo/push", relay.address))
        .header("content-type", "application/json")
        .body(json_string)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.text().await.unwrap();
    assert!(body.len() < 400, "{} bytes: {}", body.len(), &body[..400]);
    assert!(body.contains("not a flat JSON object"), "{body}");
    assert!(!body.contains('\u{1b}'), "{body}");
    let bad_data = format!(
        "appid=1&type=2&timestamp=1&sign=x&data=%5B{}",
        "x".repeat(30_000)
    );
    let answer = post(bad_data).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.text().await.unwrap();
    assert!(body.len() < 400, "{} bytes", body.len());
    // A flood of refusals: every one counted, few logged.
    let started = Instant::now();
    for _ in 0..300 {
        assert_eq!(post("appid=1".into()).await.unwrap().status(), 400);
    }
    let elapsed = started.elapsed().as_secs() + 1;
    let metrics = reqwest::get(format!("http://{}/metrics", relay.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"malformed\"} 305"),
        "{metrics}"
    );
    let (_, lines) = relay.signal("TERM").await;
    for line in &lines {
        assert!(line.len() < 2048, "a {}-byte log line", line.len());
        assert!(
            !line.contains('\u{1b}'),
            "an escape sequence in the log: {line:?}"
        );
        assert!(
            !line.starts_with("2026-11-25T00:00:00Z"),
            "a forged line: {line}"
        );
    }
    let refused = lines.iter().filter(|l| l.contains("push refused")).count();
    assert!(
        (3..=10 + 10 * elapsed as usize).contains(&refused),
        "{refused} refusal lines in {elapsed} s"
    );
    assert!(
        lines.iter().any(|l| l.contains("suppressed=")),
        "held-back lines are counted in the next one"
    );
}
