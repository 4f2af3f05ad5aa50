//! Every answer of `POST {push.path}` and what reaches the broker.

use lapin::types::{AMQPValue, ShortString};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn expected_event_id(appid: &str, type_: &str, data: &str) -> String {
    let digest = Sha256::digest(format!("{appid}\n{type_}\n{data}").as_bytes());
    hex::encode(&digest[..16])
}

#[tokio::test]
async fn a_signed_form_push_is_published_with_the_contract_envelope() {
    let app = spawn_app().await;
    let id = unique_order_id();
    let data = order_data(&id, 201);
    let ts = now();
    let fields = signed_fields(APPID, SIGN_KEY, "2", &data, ts);

    app.post_form(form(&fields)).await.assert_success();

    let msg = app.next_event().await;
    let event_id = expected_event_id(APPID, "2", &data);
    assert_eq!(
        msg.delivery.exchange.as_str(),
        app.settings.amqp.events_exchange
    );
    assert_eq!(msg.delivery.routing_key.as_str(), "order.sub_order.201");
    let p = &msg.delivery.properties;
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(
        p.content_type(),
        &Some(ShortString::from("application/json"))
    );
    assert_eq!(p.message_id(), &Some(ShortString::from(event_id.as_str())));
    assert_eq!(p.kind(), &Some(ShortString::from("sub_order")));
    let headers = p.headers().as_ref().expect("headers");
    assert_eq!(
        headers.inner().get("x-weibo-appid"),
        Some(&AMQPValue::LongString(APPID.into()))
    );

    let body: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    let received_at = body["received_at"].as_str().expect("received_at");
    let received = humantime::parse_rfc3339(received_at).expect("RFC 3339 UTC");
    assert!(
        received_at.ends_with('Z') && received_at.len() == 20,
        "{received_at}"
    );
    assert!(received.elapsed().unwrap().as_secs() < 60);
    let params: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let expected = json!({
        "event_id": event_id,
        "appid": APPID,
        "type": 2,
        "kind": "sub_order",
        "sub_order_id": id,
        "state_code": 201,
        "timestamp": ts,
        "received_at": received_at,
        "params": params,
        "data": serde_json::from_str::<Value>(&data).unwrap(),
    });
    assert_eq!(body, expected);
    assert_eq!(app.queue_depth().await, 0);
}

#[tokio::test]
async fn a_json_push_keeps_number_text_and_other_types_are_passed_on() {
    let app = spawn_app().await;
    let data = r#"{"notice":"refund","sub_order_id":4200000001}"#;
    let ts = now();
    let pairs = [
        ("appid", APPID),
        ("type", "5"),
        ("data", data),
        ("sign_type", "md5"),
    ];
    let ts_text = ts.to_string();
    let mut signed: Vec<(&str, &str)> = pairs.to_vec();
    signed.push(("timestamp", &ts_text));
    let sign = weibo_relay::signature::sign(signed.iter().copied(), SIGN_KEY);
    let body = json!({
        "appid": APPID, "type": 5, "data": data, "timestamp": ts,
        "sign_type": "md5", "sign": sign.to_uppercase(),
    });

    app.post_push("application/json", body.to_string())
        .await
        .assert_success();

    let msg = app.next_event().await;
    assert_eq!(msg.delivery.routing_key.as_str(), "order.type_5.none");
    assert_eq!(
        msg.delivery.properties.kind(),
        &Some(ShortString::from("type_5"))
    );
    let env: Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(env["kind"], "type_5");
    assert_eq!(env["type"], 5);
    assert_eq!(env["sub_order_id"], "4200000001");
    assert_eq!(env["state_code"], Value::Null);
    assert_eq!(env["params"]["type"], "5");
    assert_eq!(env["params"]["timestamp"], ts.to_string());
    assert_eq!(env["event_id"], expected_event_id(APPID, "5", data));
}

#[tokio::test]
async fn a_redelivery_with_fresh_timestamp_nonce_and_sign_is_not_published_twice() {
    let app = spawn_app().await;
    let data = order_data(&unique_order_id(), 201);
    let first = signed_fields(APPID, SIGN_KEY, "2", &data, now() - 60);
    let again = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    assert_ne!(
        first.last(),
        again.last(),
        "the redelivery has another sign"
    );

    app.post_form(form(&first)).await.assert_success();
    app.post_form(form(&again)).await.assert_success();
    app.post_form(form(&first)).await.assert_success();

    // The next state of the same order is a new event.
    let next = order_data(&unique_order_id(), 301);
    app.post_form(form(&signed_fields(APPID, SIGN_KEY, "2", &next, now())))
        .await
        .assert_success();

    eventually(
        std::time::Duration::from_secs(5),
        "two events queued",
        || async { app.queue_depth().await == 2 },
    )
    .await;
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"duplicate\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_publish_confirm_seconds_count 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn forged_stale_and_foreign_pushes_are_refused_and_not_published() {
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
async fn an_unroutable_event_is_a_503_not_a_success() {
    let app = spawn_app().await;
    let amqp = &app.settings.amqp;
    // Nothing bound for order.#: neither the test's tap nor the event log.
    let bound = [
        tap_queue(&app.settings),
        weibo_relay::amqp::Names::new(amqp).event_log().to_owned(),
    ];
    for queue in &bound {
        app.channel
            .queue_unbind(
                queue.as_str().into(),
                amqp.events_exchange.as_str().into(),
                "order.#".into(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let (body, _) = valid_form_push();
    app.post_form(body.clone()).await.assert_refused(503, 50300);

    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"broker_unavailable\"} 1"),
        "{metrics}"
    );
    // Not remembered as stored: once routable again the platform's retry is published.
    for queue in &bound {
        app.channel
            .queue_bind(
                queue.as_str().into(),
                amqp.events_exchange.as_str().into(),
                "order.#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    app.post_form(body).await.assert_success();
    eventually(
        std::time::Duration::from_secs(5),
        "retry queued",
        || async { app.queue_depth().await == 1 },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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

#[tokio::test]
async fn the_answer_to_a_stored_push_is_configuration() {
    let mut settings = test_settings(AMQP_URL);
    settings.push.success_body = "success".into();
    settings.push.success_content_type = "text/plain; charset=utf-8".into();
    let app = spawn_app_with(settings, true).await;
    let (body, _) = valid_form_push();
    let answer = app
        .http
        .post(app.push_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer.text().await.unwrap(), "success");
    app.next_event().await;
    // Refusals keep the contract's JSON.
    app.post_form("appid=1".into())
        .await
        .assert_refused(400, 40002);
}
