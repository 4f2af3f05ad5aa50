//! Losing and regaining the broker.

use std::time::Duration;

use crate::support::proxy::TcpProxy;
use crate::support::*;

#[tokio::test]
async fn while_the_broker_is_unreachable_pushes_get_503_and_after_it_returns_they_succeed() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let app = Harness::builder().amqp_url(&proxy.amqp_url()).start().await;
    assert_eq!(app.get("/readyz").await.status, 200);
    let (body, _) = valid_form_push();
    app.post_form(body).await.assert_success();

    proxy.cut();
    eventually(Duration::from_secs(5), "readyz turns 503", || async {
        app.get("/readyz").await.status == 503
    })
    .await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let (refused, _) = valid_form_push();
    app.post_form(refused.clone())
        .await
        .assert_refused(503, 50300);

    proxy.restore();
    eventually(Duration::from_secs(10), "readyz turns 200", || async {
        app.get("/readyz").await.status == 200
    })
    .await;
    // The platform's retry of the refused push now succeeds, without a process restart.
    app.post_form(refused).await.assert_success();
    eventually(Duration::from_secs(5), "both events queued", || async {
        app.queue_depth().await == 2
    })
    .await;
}

#[tokio::test]
async fn a_relay_started_without_a_broker_serves_503_until_one_appears() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    proxy.cut();
    let app = Harness::builder()
        .amqp_url(&proxy.amqp_url())
        .no_wait()
        .start()
        .await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 503);
    let metrics = app.get("/metrics").await.body;
    for line in ["weibo_relay_ready 0", "weibo_relay_broker_connected 0"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let (body, _) = valid_form_push();
    app.post_form(body.clone()).await.assert_refused(503, 50300);

    proxy.restore();
    eventually(Duration::from_secs(10), "readyz turns 200", || async {
        app.get("/readyz").await.status == 200
    })
    .await;
    let metrics = app.get("/metrics").await.body;
    for line in ["weibo_relay_ready 1", "weibo_relay_broker_connected 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    app.post_form(body).await.assert_success();
    assert_eq!(
        app.next_event().await.delivery.routing_key.as_str(),
        "order.sub_order.201"
    );
}
