//! Health, readiness, metrics and graceful shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = Harness::builder().start().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    use weibo_relay::metrics::Label;
    for outcome in weibo_relay::metrics::PushOutcome::all() {
        let line = format!(
            "weibo_relay_pushes_total{{outcome=\"{}\"}} 0",
            outcome.as_str()
        );
        assert!(metrics.body.contains(&line), "{line} in {}", metrics.body);
    }
    assert!(metrics
        .body
        .contains("weibo_relay_publish_confirm_seconds_bucket"));
}

#[tokio::test]
async fn shutdown_finishes_a_push_in_flight_then_stops_taking_new_ones() {
    let mut app = Harness::builder().start().await;
    let (body, _) = valid_form_push();
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.settings.push.path,
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    // The server must be working on the request before the shutdown begins.
    eventually(Duration::from_secs(5), "request in flight", || async {
        app.get("/metrics")
            .await
            .body
            .contains("weibo_relay_pushes_in_flight 1")
    })
    .await;

    let address = app.address.clone();
    let finish_request = async move {
        eventually(
            Duration::from_secs(5),
            "new connections refused",
            || async { reqwest::get(format!("{address}/healthz")).await.is_err() },
        )
        .await;
        stream.write_all(rest).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let ((), answer) = tokio::join!(app.stop(), finish_request);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(app.queue_depth().await, 1);
}

#[tokio::test]
async fn with_admin_bind_the_push_port_serves_pushes_only() {
    let mut settings = test_settings(AMQP_URL);
    settings.http.admin_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = Harness::builder().base(settings).start().await;
    let admin = app.admin.clone().expect("an admin listener");
    assert_ne!(admin, app.address);

    // The push port: pushes, and for anything else the contract's 404 body.
    for path in [
        "/metrics",
        "/readyz",
        "/healthz",
        "/",
        "/weibo/push/../metrics",
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(
            answer.json(),
            serde_json::json!({"code": 40400, "msg": "not found"})
        );
    }
    let (body, _) = valid_form_push();
    app.post_form(body).await.assert_success();

    // The admin port: health, readiness, metrics (with the push just counted); no pushes.
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{admin}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for line in [
        "weibo_relay_pushes_total{outcome=\"accepted\"} 1",
        "weibo_relay_ready 1",
        "weibo_relay_broker_connected 1",
        &format!(
            "weibo_relay_build_info{{role=\"receiver\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let (body, _) = valid_form_push();
    let pushed = http
        .post(format!("{admin}/weibo/push"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 404);
}
