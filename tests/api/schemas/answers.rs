//! Every HTTP answer is what `docs/openapi.yaml` gives for its path, method and status.

use super::support::*;
use crate::support::contract::*;
use crate::support::proxy::TcpProxy;
use crate::support::*;
use weibo_relay_tooling::sandbox::Faults;

#[tokio::test]
async fn every_push_answer_and_every_other_path_is_what_the_documents_describe() {
    let api = OpenApi::load();
    let app = Harness::builder().start().await;
    let push = app.settings.push.path.clone();
    let post = |answer: &Answer, status: u16, code: i64| {
        answer.assert_refused(status, code);
        assert_answer(&api, "post", &push, answer, None);
    };

    let (body, _) = valid_form_push();
    let stored = app.post_form(body).await;
    stored.assert_success();
    assert_answer(&api, "post", &push, &stored, None);

    let data = order_data(&unique_order_id(), 201);
    let mut missing = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    missing.retain(|(k, _)| k != "data");
    post(&app.post_form(form(&missing)).await, 400, 40002);
    let nested = r#"{"appid":"100023","type":2,"data":{"a":1},"timestamp":1,"sign":"x"}"#;
    post(&app.post_push("application/json", nested).await, 400, 40002);

    let mut forged = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    forged[2].1 = order_data("1", 201);
    post(&app.post_form(form(&forged)).await, 401, 40001);
    let stale = signed_fields(APPID, SIGN_KEY, "2", &data, now() - 3600);
    post(&app.post_form(form(&stale)).await, 401, 40003);
    let stranger = signed_fields("1", SIGN_KEY, "2", &data, now());
    post(&app.post_form(form(&stranger)).await, 403, 40301);
    post(&slow_client(&app.address, &push).await, 408, 40800);
    post(&app.post_form("a=".repeat(3000)).await, 413, 41300);
    post(&app.post_push("text/plain", "appid=1").await, 415, 41500);
    post(
        &app.post_push(
            "application/x-www-form-urlencoded; charset=latin1",
            "appid=1",
        )
        .await,
        415,
        41500,
    );

    // Health and readiness on the one listener.
    for path in ["/healthz", "/readyz"] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_answer(&api, "get", path, &answer, None);
    }
    assert_eq!(app.get("/metrics").await.status, 200);

    // Anything else: 404 with the contract's shape.
    let not_found = [
        raw_answer(app.http.get(format!("{}/nowhere", app.address))).await,
        raw_answer(app.http.get(app.push_url())).await,
        raw_answer(app.http.post(format!("{}/healthz", app.address))).await,
        raw_answer(app.http.delete(format!("{}/weibo", app.address))).await,
    ];
    for answer in &not_found {
        answer.assert_refused(404, 40400);
        assert_answer(&api, "any", "other path", answer, Some("Answer40400"));
    }
}

#[tokio::test]
async fn answers_without_a_broker_or_a_token_are_what_the_documents_describe() {
    let api = OpenApi::load();
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    proxy.cut();
    let app = Harness::builder()
        .amqp_url(&proxy.amqp_url())
        .no_wait()
        .start()
        .await;
    let (body, _) = valid_form_push();
    let refused = app.post_form(body).await;
    refused.assert_refused(503, 50300);
    assert_answer(&api, "post", &app.settings.push.path, &refused, None);
    let not_ready = app.get("/readyz").await;
    not_ready.assert_refused(503, 50300);
    assert_answer(&api, "get", "/readyz", &not_ready, None);
    assert_eq!(app.get("/healthz").await.status, 200);

    // A worker that never got a token.
    let rig = Harness::builder()
        .faults(Faults {
            token_fail_next: 1_000,
            ..Faults::default()
        })
        .no_wait()
        .rig()
        .await;
    let no_token = rig.app.get("/readyz").await;
    no_token.assert_refused(503, 50301);
    assert_answer(&api, "get", "/readyz", &no_token, None);
}

#[tokio::test]
async fn with_an_admin_listener_each_port_answers_the_others_paths_as_documented() {
    let api = OpenApi::load();
    let mut settings = test_settings(AMQP_URL);
    settings.http.admin_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = Harness::builder().base(settings).start().await;
    let admin = app.admin.clone().expect("an admin listener");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = app.get(path).await;
        answer.assert_refused(404, 40400);
        assert_answer(&api, "get", path, &answer, None);
    }
    for path in ["/healthz", "/readyz"] {
        let answer = raw_answer(app.http.get(format!("{admin}{path}"))).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_answer(&api, "get", path, &answer, None);
    }
    let (body, _) = valid_form_push();
    let push = raw_answer(
        app.http
            .post(format!("{admin}{}", app.settings.push.path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    push.assert_refused(404, 40400);
    assert_answer(&api, "post", "admin listener", &push, Some("Answer40400"));
}
