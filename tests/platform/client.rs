//! `WeiboClient` against the sandbox: signatures, every row of the code table, transport faults.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use weibo_relay::signature;
use weibo_relay::tooling::sandbox::{CLOSED, FINISHED, PAID, TIMED_OUT};
use weibo_relay::weibo::{CallOutcome, TokenError, WeiboClient};

use crate::support::{settings, sub, Platform, APPID, SIGN_KEY};

const HOUR: Duration = Duration::from_secs(3600);

fn params(request: &Value) -> Vec<(String, String)> {
    request["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn assert_signed(request: &Value, endpoint: &str, expected_keys: &[&str]) {
    assert_eq!(request["endpoint"], endpoint);
    let p = params(request);
    let keys: BTreeSet<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, expected_keys.iter().copied().collect());
    let get = |k: &str| p.iter().find(|(key, _)| key == k).unwrap().1.clone();
    assert_eq!(get("appid"), APPID);
    assert_eq!(get("sign_type"), "md5");
    assert_eq!(get("access_token"), "[redacted]", "the token was sent");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = get("timestamp").parse().unwrap();
    assert!(now.abs_diff(ts) < 60, "timestamp is unix seconds");
    // The sign covers everything but sign, sign_type and access_token.
    let signed: Vec<(&str, &str)> = p
        .iter()
        .filter(|(k, _)| !["sign", "sign_type", "access_token"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(get("sign"), signature::sign(signed, SIGN_KEY));
}

#[tokio::test]
async fn finish_and_close_succeed_with_the_exact_signed_params() {
    let p = Platform::start(HOUR).await;
    let ids = p.orders(2, PAID).await;
    let token = p.client.fetch_token(p.merchant()).await.unwrap();
    assert_eq!(token.expires_in(), HOUR);

    let finished = p.client.finish(p.merchant(), &sub(&ids[0]), &token).await;
    assert_eq!(finished, CallOutcome::Succeeded { code: 0 });
    let closed = p
        .client
        .close(p.merchant(), &sub(&ids[1]), "out of stock", &token)
        .await;
    assert_eq!(closed, CallOutcome::Succeeded { code: 0 });
    assert_eq!(p.state_of(&ids[0]).await, u64::from(FINISHED));
    assert_eq!(p.state_of(&ids[1]).await, u64::from(CLOSED));

    let requests = p.requests().await;
    let common = [
        "access_token",
        "appid",
        "sign",
        "sign_type",
        "sub_order_id",
        "timestamp",
    ];
    assert_eq!(requests[0]["endpoint"], "authorize");
    assert_signed(&requests[1], "retailerFinishSub", &common);
    assert_eq!(requests[1]["params"]["sub_order_id"], ids[0].as_str());
    let mut with_reason = common.to_vec();
    with_reason.push("reason");
    assert_signed(&requests[2], "retailerCloseSub", &with_reason);
    assert_eq!(requests[2]["params"]["reason"], "out of stock");
    assert_eq!(p.calls("retailerFinishSub", "0").await, 1);
    assert_eq!(p.calls("retailerCloseSub", "0").await, 1);
}

#[tokio::test]
async fn order_codes_and_the_idempotent_rule() {
    let p = Platform::start(HOUR).await;
    let m = p.merchant();
    let token = p.client.fetch_token(m).await.unwrap();
    let ids = p.orders(2, PAID).await;
    let timed_out = p.orders(1, TIMED_OUT).await.remove(0);
    let (finished, closed) = (&ids[0], &ids[1]);
    let c = &p.client;
    assert_eq!(
        c.finish(m, &sub(finished), &token).await,
        CallOutcome::Succeeded { code: 0 }
    );
    assert_eq!(
        c.close(m, &sub(closed), "r", &token).await,
        CallOutcome::Succeeded { code: 0 }
    );
    let permanent = |code: i64, msg: &str| CallOutcome::Permanent {
        code: Some(code),
        msg: msg.to_owned(),
    };
    // 70102: success for finish, permanent for close; 70103 the other way round.
    assert_eq!(
        c.finish(m, &sub(finished), &token).await,
        CallOutcome::Succeeded { code: 70102 }
    );
    assert_eq!(
        c.close(m, &sub(finished), "r", &token).await,
        permanent(70102, "sub order already finished")
    );
    assert_eq!(
        c.close(m, &sub(closed), "r", &token).await,
        CallOutcome::Succeeded { code: 70103 }
    );
    assert_eq!(
        c.finish(m, &sub(closed), &token).await,
        permanent(70103, "sub order already closed")
    );
    // 70101, 70104, 40002 (close requires a reason).
    assert_eq!(
        c.finish(m, &sub("999"), &token).await,
        permanent(70101, "sub order not found")
    );
    let not_allowed = permanent(70104, "sub order state does not allow this action");
    assert_eq!(c.finish(m, &sub(&timed_out), &token).await, not_allowed);
    assert_eq!(c.close(m, &sub(&timed_out), "r", &token).await, not_allowed);
    let fresh = p.orders(1, PAID).await.remove(0);
    assert_eq!(
        c.close(m, &sub(&fresh), "", &token).await,
        permanent(40002, "missing parameter reason")
    );
    assert_eq!(p.state_of(&fresh).await, u64::from(PAID));
    assert_eq!(p.calls("retailerFinishSub", "70102").await, 1);
    assert_eq!(p.calls("retailerCloseSub", "70104").await, 1);
}

#[tokio::test]
async fn wrong_sign_key_is_a_permanent_40001() {
    let p = Platform::start(HOUR).await;
    let token = p.client.fetch_token(p.merchant()).await.unwrap();
    let id = p.orders(1, PAID).await.remove(0);
    let wrong = settings(&p.sandbox.base_url(), "not the key 0123456789", 1000);
    let outcome = p
        .client
        .finish(wrong.merchants.get(APPID).unwrap(), &sub(&id), &token)
        .await;
    assert_eq!(
        outcome,
        CallOutcome::Permanent {
            code: Some(40001),
            msg: "bad signature".into()
        }
    );
    assert_eq!(p.state_of(&id).await, u64::from(PAID));
}

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
        weibo_relay::settings::Merchants::new(vec![weibo_relay::tooling::stage::merchant(
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

#[tokio::test]
async fn get_sub_answers_the_order_details() {
    use secrecy::ExposeSecret;
    let p = Platform::start(HOUR).await;
    let token = p.client.fetch_token(p.merchant()).await.unwrap();
    let id = p.orders(1, PAID).await.remove(0);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signed = [
        ("appid", APPID),
        ("sub_order_id", id.as_str()),
        ("timestamp", timestamp.as_str()),
    ];
    let sign = signature::sign(signed, SIGN_KEY);
    let query = |sign: &str| {
        let mut q = signed.to_vec();
        q.push(("sign_type", "md5"));
        q.push(("access_token", token.secret().expose_secret()));
        q.into_iter()
            .chain([("sign", sign)])
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let url = format!("{}/order/retailerGetSub", p.sandbox.api_base());
    let http = reqwest::Client::new();
    let answer: Value = http
        .get(&url)
        .query(&query(&sign))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["code"], 0);
    assert_eq!(answer["msg"], "success");
    assert_eq!(answer["data"]["sub_order_id"], id.as_str());
    assert_eq!(answer["data"]["state_code"], PAID);
    for field in [
        "expect_finish_time",
        "finish_type",
        "is_timeout",
        "contact_phone",
    ] {
        assert!(!answer["data"][field].is_null(), "{field}");
    }
    let refused = http.get(&url).query(&query("0000")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["code"], 40001);
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

/// A host that answers every request with `head` and then `body_bytes` bytes of JSON-ish
/// padding, or until the client goes.
async fn flooding_host(head: String, body_bytes: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let head = head.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 65536];
                let _ = socket.read(&mut request).await;
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(b"{\"code\":0,\"msg\":\"").await?;
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0;
                while sent < body_bytes {
                    socket.write_all(&chunk).await?;
                    sent += chunk.len();
                }
                socket.write_all(b"\"}").await
            });
        }
    });
    base
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
