//! The sandbox's push sender: signed pushes, redelivered on the (scaled) schedule.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use weibo_relay_tooling::sandbox::{PushSchedule, PushSender, Sandbox, SandboxConfig};

use crate::support::*;

/// A merchant endpoint that refuses the first `fail_first` deliveries with 503.
struct Endpoint {
    bodies: Mutex<Vec<BTreeMap<String, String>>>,
    fail_first: usize,
}

async fn receive(state: web::Data<Endpoint>, body: String) -> HttpResponse {
    let fields = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut bodies = state.bodies.lock().unwrap();
    bodies.push(fields);
    if bodies.len() <= state.fail_first {
        HttpResponse::ServiceUnavailable().finish()
    } else {
        HttpResponse::Ok().json(serde_json::json!({"code": 0, "msg": "success"}))
    }
}

fn endpoint(fail_first: usize) -> (String, web::Data<Endpoint>) {
    let state = web::Data::new(Endpoint {
        bodies: Mutex::new(Vec::new()),
        fail_first,
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let shared = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/push", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, state)
}

fn sandbox() -> Arc<weibo_relay_tooling::sandbox::SandboxHandle> {
    let merchants = test_settings(AMQP_URL).merchants;
    Arc::new(Sandbox::start(SandboxConfig::new(merchants)).unwrap())
}

#[tokio::test]
async fn a_refused_push_is_redelivered_with_fresh_signatures_until_accepted() {
    let (url, seen) = endpoint(2);
    let sandbox = sandbox();
    let sender = PushSender::start(&sandbox, url, PushSchedule::scaled(0.001));
    let id = sandbox.create_orders(APPID, 1).remove(0);
    let stats = sender.stats().clone();
    eventually(Duration::from_secs(5), "push accepted", || {
        let stats = stats.clone();
        async move { stats.accepted.load(Ordering::Relaxed) == 1 }
    })
    .await;
    assert_eq!(stats.deliveries.load(Ordering::Relaxed), 3);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 2);

    let bodies = seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    for b in &bodies {
        let pairs = b.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert!(
            weibo_relay::signature::verify(pairs, SIGN_KEY, &b["sign"]),
            "{b:?}"
        );
        assert_eq!(b["appid"], APPID);
        assert_eq!(b["type"], "2");
        assert_eq!(b["sign_type"], "md5");
        assert!((b["timestamp"].parse::<i64>().unwrap() - now()).abs() < 60);
        assert_eq!(
            b["data"], bodies[0]["data"],
            "a redelivery carries the same event"
        );
    }
    assert_ne!(bodies[0]["nonce"], bodies[1]["nonce"]);
    let data: serde_json::Value = serde_json::from_str(&bodies[0]["data"]).unwrap();
    assert_eq!(data["sub_order_id"], id.as_str());
    assert_eq!(data["state_code"], 201);
    for field in [
        "recharge_account_type",
        "recharge_account",
        "addtime",
        "pay_time",
        "buyer_id",
        "sku_list",
        "buyer",
        "expect_finish_time",
        "finish_type",
        "is_timeout",
        "contact_phone",
    ] {
        assert!(!data[field].is_null(), "{field} missing in {data}");
    }
    sender.stop().await;
}

#[tokio::test]
async fn a_push_never_accepted_is_given_up_after_three_redeliveries() {
    let (url, seen) = endpoint(usize::MAX);
    let sandbox = sandbox();
    let sender = PushSender::start(&sandbox, url, PushSchedule::scaled(0.001));
    sandbox.create_orders(APPID, 1);
    let stats = sender.stats().clone();
    eventually(Duration::from_secs(5), "push given up", || {
        let stats = stats.clone();
        async move { stats.gave_up.load(Ordering::Relaxed) == 1 }
    })
    .await;
    assert_eq!(stats.deliveries.load(Ordering::Relaxed), 4);
    assert_eq!(seen.bodies.lock().unwrap().len(), 4);
    assert_eq!(stats.pending(), 0);
    sender.stop().await;
}
