//! Order calls: signed params, every row of the code table, the order details.

use super::support::*;
use crate::support::{settings, sub, Platform, APPID, SIGN_KEY};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use weibo_relay::signature;
use weibo_relay::weibo::CallOutcome;
use weibo_relay_tooling::sandbox::{CLOSED, FINISHED, PAID, TIMED_OUT};

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
