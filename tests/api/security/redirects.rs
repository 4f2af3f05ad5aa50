//! A platform answering with redirects gets nothing followed.

use super::support::*;
use crate::support::rig::{finish, header_text};
use crate::support::*;
use std::time::Duration;

#[tokio::test]
async fn a_redirecting_token_endpoint_gets_nothing_followed_and_no_token_is_taken() {
    use std::sync::atomic::Ordering;
    let (trap_url, trapped) = trap().await;
    let (redirect, answered) = redirector(302, format!("{trap_url}/oauth2/shop/authorize")).await;
    let rig = Harness::builder()
        .no_wait()
        .settings(move |s| s.weibo.oauth_base = redirect.parse().unwrap())
        .rig()
        .await;
    let counter = |line: String| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(15),
        "two refused token requests",
        || async {
            counter(
                rig.metric("weibo_relay_token_refresh_failures_total{appid=\"100023\"}")
                    .await,
            ) >= 2
        },
    )
    .await;
    assert!(answered.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    let ready = rig.app.get("/readyz").await;
    ready.assert_refused(503, 50301);
    assert_eq!(
        counter(
            rig.metric("weibo_relay_token_refreshes_total{appid=\"100023\"}")
                .await
        ),
        0
    );
}

#[tokio::test]
async fn a_redirecting_order_interface_gets_nothing_followed_and_the_command_is_not_done() {
    use std::sync::atomic::Ordering;
    let (trap_url, trapped) = trap().await;
    let (redirect, answered) = redirector(307, format!("{trap_url}/steal")).await;
    let rig = Harness::builder()
        .settings(|s| s.weibo.max_attempts = 2.try_into().unwrap())
        .settings(move |s| s.weibo.api_base = redirect.parse().unwrap())
        .rig()
        .await;
    let id = rig.create_orders(1).await.remove(0);
    rig.send(finish(&id)).await;
    let (dead, headers) = rig.next_dead().await;
    assert_eq!(dead, finish(&id));
    let reason = header_text(&headers, "x-death-reason");
    assert!(
        reason.contains("HTTP 307 redirect to \"127.0.0.1\" not followed"),
        "{reason}"
    );
    assert!(!headers.inner().contains_key("x-last-code"), "{headers:?}");
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.failed");
    assert_eq!(answered.load(Ordering::SeqCst), 2, "one call per attempt");
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(rig.order_state(&id).await, 201);
}
