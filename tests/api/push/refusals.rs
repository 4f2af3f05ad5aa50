//! Forged, malformed, oversize and slow pushes are refused with the reason.

use super::support::*;
use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn forged_stale_and_foreign_pushes_are_refused_and_not_published() {
    let app = Harness::builder().start().await;
    let data = order_data(&unique_order_id(), 201);

    let wrong_key = signed_fields(APPID, "not-the-key", "2", &data, now());
    app.post_form(form(&wrong_key))
        .await
        .assert_refused(401, 40001);

    let other_merchants_key = signed_fields(APPID, OTHER_SIGN_KEY, "2", &data, now());
    app.post_form(form(&other_merchants_key))
        .await
        .assert_refused(401, 40001);

    let mut tampered = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    tampered[2].1 = data.replace("13812345678", "13800000000");
    app.post_form(form(&tampered))
        .await
        .assert_refused(401, 40001);

    let stale = signed_fields(APPID, SIGN_KEY, "2", &data, now() - 301);
    app.post_form(form(&stale)).await.assert_refused(401, 40003);
    let future = signed_fields(APPID, SIGN_KEY, "2", &data, now() + 301);
    app.post_form(form(&future))
        .await
        .assert_refused(401, 40003);

    let unknown = signed_fields("999999", SIGN_KEY, "2", &data, now());
    app.post_form(form(&unknown))
        .await
        .assert_refused(403, 40301);

    // The other merchant, with its own key, is accepted.
    let other = signed_fields(OTHER_APPID, OTHER_SIGN_KEY, "2", &data, now());
    app.post_form(form(&other)).await.assert_success();
    eventually(
        std::time::Duration::from_secs(5),
        "one event queued",
        || async { app.queue_depth().await == 1 },
    )
    .await;

    let metrics = app.get("/metrics").await.body;
    for line in [
        "weibo_relay_pushes_total{outcome=\"bad_signature\"} 3",
        "weibo_relay_pushes_total{outcome=\"stale\"} 2",
        "weibo_relay_pushes_total{outcome=\"unknown_merchant\"} 1",
        "weibo_relay_pushes_total{outcome=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn malformed_bodies_get_400_with_the_reason() {
    let app = Harness::builder().start().await;
    let data = order_data(&unique_order_id(), 201);
    let good = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    for missing in ["appid", "type", "data", "timestamp", "sign"] {
        let without: Vec<_> = good.iter().filter(|(k, _)| k != missing).cloned().collect();
        let answer = app.post_form(form(&without)).await;
        answer.assert_refused(400, 40002);
        assert!(
            answer.body.contains(&format!("missing {missing}")),
            "{}",
            answer.body
        );
    }
    let with = |key: &str, value: &str| {
        let mut f = good.clone();
        f.iter_mut().find(|(k, _)| k == key).unwrap().1 = value.to_owned();
        form(&f)
    };
    for (body, reason) in [
        (with("type", "two"), "type is not an integer"),
        (with("data", "{not json"), "data is not JSON"),
        (
            with("timestamp", "yesterday"),
            "timestamp is not an integer",
        ),
        (format!("{}&appid=1", form(&good)), "given twice"),
        ("appid=%FF%FE&type=2".to_owned(), "not valid UTF-8"),
        (String::new(), "missing appid"),
    ] {
        let answer = app.post_form(body).await;
        answer.assert_refused(400, 40002);
        assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
    }
    for body in [
        r#"{"appid":"100023","type":2,"data":{"nested":true}}"#,
        r#"["not","an","object"]"#,
        r#"{"appid":"100023","appid":"100023"}"#,
        "{\"appid\":\"\u{0}",
    ] {
        app.post_push("application/json", body)
            .await
            .assert_refused(400, 40002);
    }
    app.post_push("application/json", vec![0xffu8, 0xfe, b'{'])
        .await
        .assert_refused(400, 40002);
    assert_eq!(app.queue_depth().await, 0);
}

#[tokio::test]
async fn oversize_bodies_and_other_content_types_are_refused() {
    let app = Harness::builder().start().await;
    let big = format!("appid=1&data={}", "x".repeat(5000));
    app.post_form(big).await.assert_refused(413, 41300);

    let (body, _) = valid_form_push();
    app.post_push("text/plain", body.clone())
        .await
        .assert_refused(415, 41500);
    app.post_push(
        "application/x-www-form-urlencoded; charset=gbk",
        body.clone(),
    )
    .await
    .assert_refused(415, 41500);
    let no_type = app
        .http
        .post(app.push_url())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status().as_u16(), 415);
    assert_eq!(app.queue_depth().await, 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = Harness::builder().start().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nConnection: close\r\n\r\nappid=1",
        app.settings.push.path
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server never gave up on the slow client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":40800"#), "{answer}");
}

#[tokio::test]
async fn many_fields_are_refused_and_long_values_within_the_limit_are_fine() {
    let app = Harness::builder().start().await;
    let many: String = (0..70)
        .map(|i| format!("f{i}=v"))
        .collect::<Vec<_>>()
        .join("&");
    let answer = app.post_form(many).await;
    answer.assert_refused(400, 40002);
    assert!(
        answer.body.contains("more than 64 fields"),
        "{}",
        answer.body
    );

    // A long (but in-limit) extra field is signed and passed on like any other.
    let data = order_data(&unique_order_id(), 201);
    let mut fields = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    fields.pop();
    fields.push(("remark".to_owned(), "r".repeat(2000)));
    let pairs = fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let sign = weibo_relay::signature::sign(pairs, SIGN_KEY);
    fields.push(("sign".to_owned(), sign));
    app.post_form(form(&fields)).await.assert_success();
    let msg = app.next_event().await;
    let env: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(env["params"]["remark"].as_str().unwrap().len(), 2000);
}

/// The seed's Java and Go `getSign` keep empty values and do not trim: a push signed that way
/// is accepted and published as signed; its forged twins are not.
#[tokio::test]
async fn a_push_signed_the_java_and_go_way_is_accepted_and_its_forged_twins_are_not() {
    use weibo_relay::signature::{sign_in, Form};
    let app = Harness::builder().start().await;
    let data = format!("{} ", order_data(&unique_order_id(), 201));
    let ts = now().to_string();
    let mut fields: Vec<(String, String)> = [
        ("appid", APPID),
        ("type", "2"),
        ("data", data.as_str()),
        ("timestamp", ts.as_str()),
        ("nonce", "0c1f"),
        ("remark", ""),
        ("sign_type", "md5"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let pairs = |f: &[(String, String)]| {
        f.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let sign = sign_in(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SIGN_KEY,
        Form::Raw,
    );
    // The PHP form would not produce this signature (it drops remark and trims data).
    assert_ne!(
        sign,
        weibo_relay::signature::sign(
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SIGN_KEY
        )
    );
    fields.push(("sign".into(), sign));

    let mut forged_data = pairs(&fields);
    forged_data[2].1 = format!("{} ", order_data(&unique_order_id(), 301));
    let mut without_remark = pairs(&fields);
    without_remark.retain(|(k, _)| k != "remark");
    let mut trimmed = pairs(&fields);
    trimmed[2].1 = data.trim_end().to_owned();
    for twin in [forged_data, without_remark, trimmed] {
        app.post_form(form(&twin)).await.assert_refused(401, 40001);
    }
    app.post_form(form(&fields)).await.assert_success();

    let msg = app.next_event().await;
    let body: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(body["event_id"], expected_event_id(APPID, "2", &data));
    assert_eq!(body["params"]["remark"], "");
    assert_eq!(body["params"]["data"], data.as_str());
    assert_eq!(app.queue_depth().await, 0);
}
