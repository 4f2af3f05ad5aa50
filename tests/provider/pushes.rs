//! Provider mode's pushes in the shipped binary: verified with the provider's key, the merchant
//! named by the signed `uid`; only an authorized merchant's push is stored, its event naming
//! the merchant in the envelope and the `x-weibo-merchant` header.

use std::time::{Duration, Instant};

use weibo_relay::signature;

use crate::relay::{stderr, stdout, ProviderRelay, UID};
use crate::tap::next_event;

const PROVIDER_KEY: &str = "provider-sign-key-0123";

/// A sub-order push signed by the provider, with `uid` signed when given.
fn push(sub_order_id: &str, uid: Option<&str>) -> String {
    let data = format!(r#"{{"sub_order_id":"{sub_order_id}","state_code":201}}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let mut fields = vec![
        ("appid", "100023".to_owned()),
        ("type", "2".to_owned()),
        ("data", data),
        ("timestamp", now),
    ];
    if let Some(uid) = uid {
        fields.push(("uid", uid.to_owned()));
    }
    let sign = signature::sign(fields.iter().map(|(k, v)| (*k, v.as_str())), PROVIDER_KEY);
    fields.push(("sign", sign));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Status and body of a push.
async fn send(relay: &ProviderRelay, body: String) -> (u16, serde_json::Value) {
    let answer = relay
        .http
        .post(format!("{}/weibo/push", relay.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Every answer the test got, by status: what the relay's push counters must say.
#[derive(Default)]
struct Tally {
    stored: u64,
    unknown_uid: u64,
    next_id: u64,
}

impl Tally {
    /// Sends pushes for `uid`, each for a new sub order (no duplicates), until one is
    /// answered `status` (the uid book reloads every 5 s), at most 20 s.
    async fn until(&mut self, relay: &ProviderRelay, uid: &str, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.next_id += 1;
            let (got, answer) =
                send(relay, push(&format!("91{:04}", self.next_id), Some(uid))).await;
            self.count(got, &answer);
            if got == status {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "still {got} {answer}, never {status}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn count(&mut self, status: u16, answer: &serde_json::Value) {
        match (status, answer["code"].as_i64()) {
            (200, _) => self.stored += 1,
            (403, Some(40302)) => self.unknown_uid += 1,
            _ => {}
        }
    }
}

#[tokio::test]
async fn pushes_of_authorized_merchants_are_stored_naming_them_and_others_are_refused_403() {
    let relay = ProviderRelay::start().await;
    let mut tally = Tally::default();
    // Before any merchant: the provider's signature holds, the uid names nobody.
    let (status, answer) = send(&relay, push("900001", Some(UID))).await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (403, Some(40302)),
        "{answer}"
    );
    let (status, answer) = send(&relay, push("900002", None)).await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (403, Some(40302)),
        "no uid: {answer}"
    );
    tally.unknown_uid += 2;
    // A uid added outside the signature breaks it.
    let unsigned = format!("{}&uid={UID}", push("900003", None));
    assert_eq!(send(&relay, unsigned).await.0, 401);

    let linked = relay.merchants(&["link", "--ref", "shop-1"]);
    assert!(linked.status.success(), "{}", stderr(&linked));
    assert_eq!(relay.consent(stdout(&linked).trim(), UID).await, 200);
    assert_eq!(next_event(&relay.settings).await.0, "merchant.authorized");

    tally.until(&relay, UID, 200).await;
    let (key, merchant, body) = next_event(&relay.settings).await;
    assert_eq!(key, "order.sub_order.201");
    assert_eq!(merchant, "shop-1", "x-weibo-merchant");
    assert_eq!(body["merchant_ref"], "shop-1");
    assert_eq!(body["uid"], UID);
    assert_eq!(body["sub_order_id"], format!("91{:04}", tally.next_id));
    assert_eq!(
        body["params"]["uid"], UID,
        "the signed uid is published with the params"
    );
    // Another uid, even well-formed and signed, is nobody's.
    let (status, answer) = send(&relay, push("900005", Some("1404376561"))).await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (403, Some(40302)),
        "{answer}"
    );
    tally.unknown_uid += 1;

    // Revoked: its pushes are refused again once the book reloads (within 5 s: a push in
    // between is still stored, as for a merchant authorized at that moment).
    let revoked = relay.merchants(&["revoke", "shop-1"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(next_event(&relay.settings).await.0, "merchant.revoked");
    let answer = tally.until(&relay, UID, 403).await;
    assert_eq!(answer["code"], 40302);
    let metrics = relay
        .http
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a body");
    for (outcome, n) in [
        ("accepted", tally.stored),
        ("unknown_uid", tally.unknown_uid),
        ("duplicate", 0),
    ] {
        let line = format!("weibo_relay_pushes_total{{outcome=\"{outcome}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line}in\n{metrics}");
    }
    relay.stop().await;
}
