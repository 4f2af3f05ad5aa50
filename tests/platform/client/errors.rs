//! Tokens refused, rate limits, server and transport faults, gateway errors, huge answers.

use super::support::*;
use crate::support::{settings, sub, Platform, APPID, SIGN_KEY};
use serde_json::json;
use weibo_relay::weibo::{CallOutcome, TokenError, WeiboClient};
use weibo_relay_tooling::sandbox::PAID;

#[tokio::test]
async fn rejected_tokens() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let id = p.orders(1, PAID).await.remove(0);
    let first = p.client.fetch_token(m).await.unwrap();
    // A second issue supersedes the first: 21332.
    let second = p.client.fetch_token(m).await.unwrap();
    assert_eq!(
        p.client.finish(m, &sub(&id), &first).await,
        CallOutcome::TokenRejected { code: 21332 }
    );
    // Expired: 21327.
    p.revoke(21327).await;
    assert_eq!(
        p.client.close(m, &sub(&id), "r", &second).await,
        CallOutcome::TokenRejected { code: 21327 }
    );
    assert_eq!(p.state_of(&id).await, u64::from(PAID));
    let third = p.client.fetch_token(m).await.unwrap();
    assert_eq!(
        p.client.finish(m, &sub(&id), &third).await,
        CallOutcome::Succeeded { code: 0 }
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_transient() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let token = p.client.fetch_token(m).await.unwrap();
    let id = p.orders(1, PAID).await.remove(0);
    for code in [10023, 10024] {
        p.faults(json!({"rate_limit_next": 1, "rate_limit_code": code}))
            .await;
        assert_eq!(
            p.client.finish(m, &sub(&id), &token).await,
            CallOutcome::Transient {
                code: Some(code),
                reason: format!("code {code}: user requests out of rate limit!")
            }
        );
    }
    p.faults(json!({"fail_next": 1, "error_status": 502})).await;
    assert_eq!(
        p.client.finish(m, &sub(&id), &token).await,
        CallOutcome::Transient {
            code: None,
            reason: "HTTP 502".into()
        }
    );
    p.faults(json!({"error_rate": 1.0})).await;
    assert_eq!(
        p.client.close(m, &sub(&id), "r", &token).await,
        CallOutcome::Transient {
            code: None,
            reason: "HTTP 503".into()
        }
    );
    assert_eq!(p.state_of(&id).await, u64::from(PAID));
    p.faults(json!({})).await;
    assert_eq!(
        p.client.finish(m, &sub(&id), &token).await,
        CallOutcome::Succeeded { code: 0 }
    );
    assert_eq!(p.calls("retailerFinishSub", "http_502").await, 1);
    assert_eq!(p.calls("retailerFinishSub", "10024").await, 1);
}

#[tokio::test]
async fn time_outs_and_connection_errors_are_transient() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let token = p.client.fetch_token(m).await.unwrap();
    let id = p.orders(1, PAID).await.remove(0);
    p.faults(json!({"latency_ms": 1500})).await;
    let outcome = p.client.finish(m, &sub(&id), &token).await;
    assert!(
        matches!(&outcome, CallOutcome::Transient { code: None, reason } if reason.starts_with("time-out")),
        "{outcome:?}"
    );
    // Nothing listens on a port the OS just handed out and took back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = settings(&format!("http://127.0.0.1:{port}"), SIGN_KEY, 1000);
    let nowhere = WeiboClient::new(&closed.weibo).unwrap();
    let outcome = nowhere.finish(m, &sub(&id), &token).await;
    // The whole cause chain, down to the operating system's answer.
    assert!(
        matches!(&outcome, CallOutcome::Transient { code: None, reason }
            if reason.starts_with("connection error") && reason.contains("Connection refused")),
        "{outcome:?}"
    );
    match nowhere.fetch_token(m).await {
        Err(TokenError::Transport(why)) => {
            assert!(why.starts_with("token endpoint 127.0.0.1: "), "{why}");
            assert!(why.contains("Connection refused"), "{why}");
            assert!(!why.contains("sign="), "the signed query leaked: {why}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn token_request_errors() {
    let p = Platform::start(HOUR).await;
    let mut wrong = settings(&p.sandbox.base_url(), SIGN_KEY, 1000);
    wrong.merchants =
        weibo_relay::settings::Merchants::new(vec![weibo_relay_tooling::stage::merchant(
            APPID,
            SIGN_KEY,
            "772915",
            "not the secret 0123456789",
            "1404376560",
        )]);
    let err = p
        .client
        .fetch_token(wrong.merchants.get(APPID).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Refused {
                status: 400,
                code: Some(40001),
                ..
            }
        ),
        "{err}"
    );
    p.faults(json!({"token_fail_next": 1})).await;
    let err = p.client.fetch_token(p.merchant()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Refused {
                status: 503,
                code: None,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(p.tokens_issued().await, 0);
    assert!(p.client.fetch_token(p.merchant()).await.is_ok());
    assert_eq!(p.tokens_issued().await, 1);
}

/// The real gateway answers token, rate and system errors in its own envelope, at HTTP 400 or
/// 403, the code as a string: each is still read for what it is.
#[tokio::test]
async fn weibo_gateway_errors_are_read_by_their_code_at_any_status() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let token = p.client.fetch_token(m).await.unwrap();
    let id = p.orders(1, PAID).await.remove(0);
    for code in [10022, 10023, 10024] {
        p.faults(json!({"error_envelope": "weibo", "rate_limit_next": 1, "rate_limit_code": code}))
            .await;
        assert!(
            matches!(p.client.finish(m, &sub(&id), &token).await, CallOutcome::Transient { code: Some(c), .. } if c == code),
            "{code}"
        );
    }
    p.faults(json!({"error_envelope": "weibo", "system_error_next": 1}))
        .await;
    assert_eq!(
        p.client.finish(m, &sub(&id), &token).await,
        CallOutcome::Transient {
            code: Some(10002),
            reason: "code 10002: service unavailable".into()
        }
    );
    p.faults(json!({"error_envelope": "weibo", "code_next": 1, "code": 66666}))
        .await;
    assert_eq!(
        p.client.finish(m, &sub(&id), &token).await,
        CallOutcome::Permanent {
            code: Some(66666),
            msg: "injected answer".into()
        }
    );
    p.revoke(21327).await;
    assert_eq!(
        p.client.finish(m, &sub(&id), &token).await,
        CallOutcome::TokenRejected { code: 21327 }
    );
    assert_eq!(p.calls("retailerFinishSub", "10002").await, 1);
    assert_eq!(p.calls("retailerFinishSub", "66666").await, 1);
    let fresh = p.client.fetch_token(m).await.unwrap();
    assert_eq!(
        p.client.finish(m, &sub(&id), &fresh).await,
        CallOutcome::Succeeded { code: 0 }
    );
}

/// An answer that never ends, or says it is huge, is refused after 4 MiB, never read whole:
/// a transient failure for an order call, a transport failure for a token request.
#[tokio::test]
async fn an_answer_over_four_mib_is_not_read() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let token = p.client.fetch_token(m).await.unwrap();
    let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    for head in [
        // Read until the connection closes: no length given.
        format!("{ok}Connection: close\r\n\r\n"),
        // A length the client could believe and allocate.
        format!("{ok}Content-Length: {}\r\n\r\n", 1u64 << 40),
    ] {
        let base = flooding_host(head, 64 << 20).await;
        let client = WeiboClient::new(&settings(&base, SIGN_KEY, 5000).weibo).unwrap();
        let outcome = client.finish(m, &sub("42"), &token).await;
        assert_eq!(
            outcome,
            CallOutcome::Transient {
                code: None,
                reason: "answer larger than 4194304 bytes, not read".into()
            }
        );
        match client.fetch_token(m).await {
            Err(TokenError::Transport(why)) => assert_eq!(
                why,
                "token endpoint 127.0.0.1: answer larger than 4194304 bytes, not read"
            ),
            other => panic!("{other:?}"),
        }
    }
}
