//! The event log is a stream kept for its age, replayed by window, appid and sub-order.

use super::support::*;
use crate::support::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::time::{Duration, SystemTime};
use weibo_relay::event::replay::{replay, ReplayError, ReplayOptions};
use weibo_relay::settings::MaxAge;

/// The event log is a stream with the configured retention: declaring it with that
/// `x-max-age` is accepted, with another one refused (PRECONDITION_FAILED).
#[tokio::test]
async fn the_event_log_is_a_stream_kept_for_event_log_max_age() {
    let mut settings = test_settings(AMQP_URL);
    settings.event_log.max_age = MaxAge::parse("3D").unwrap();
    let app = Harness::builder().base(settings).start().await;
    let log = weibo_relay::amqp::Names::new(&app.settings.amqp)
        .event_log()
        .to_owned();
    let app = &app;
    let declare = |max_age: &'static str| {
        let log = log.clone();
        async move {
            let channel = app.connection().create_channel().await.unwrap();
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            args.insert("x-max-age".into(), AMQPValue::LongString(max_age.into()));
            let declared = channel
                .queue_declare(
                    log.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args,
                )
                .await;
            if declared.is_ok() {
                let _ = channel.close(200, "done".into()).await;
            }
            declared.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    assert_eq!(declare("3D").await, Ok(()));
    let refused = declare("7D").await.unwrap_err();
    assert!(
        refused.contains("PRECONDITION_FAILED") && refused.contains("x-max-age"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_log_replays_by_window_appid_and_sub_order_into_a_queue_that_exists() {
    let app = Harness::builder().start().await;
    let (a, b) = (unique_order_id(), unique_order_id());
    let started = SystemTime::now() - Duration::from_secs(1);
    push(&app, APPID, SIGN_KEY, &a, 201).await;
    push(&app, OTHER_APPID, OTHER_SIGN_KEY, &b, 201).await;
    let boundary = next_second(SystemTime::now()).await;
    push(&app, APPID, SIGN_KEY, &a, 301).await;
    // A queue of the test's own to replay into: another connection must see it, so not
    // exclusive; it expires a minute after the test, even one that panicked.
    let target = format!("{}.replayed", app.settings.amqp.events_queue);
    let _target = declare_expiring(&app, &target).await;
    let options = |until: SystemTime, appid: Option<&str>, id: Option<&str>| ReplayOptions {
        since: started,
        until,
        appid: appid.map(|a| weibo_relay::ids::AppId::parse(a).unwrap()),
        sub_order_id: id.map(str::to_owned),
        routing_key: None,
        to_queue: target.clone(),
    };
    let far = SystemTime::now() + Duration::from_secs(60);
    let run = |o: ReplayOptions| {
        let settings = app.settings.clone();
        async move { replay(&settings, &o, |_| {}, &Default::default()).await }
    };
    let states = |events: Vec<(String, String, Value)>| -> Vec<(String, i64)> {
        events
            .iter()
            .map(|(_, _, b)| {
                (
                    b["sub_order_id"].as_str().unwrap().to_owned(),
                    b["state_code"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let replayed = |()| async {
        let mut out = Vec::new();
        while let Some(e) = take(&app, &target).await {
            out.push(e);
        }
        out
    };

    let all = run(options(far, None, None)).await.unwrap();
    assert_eq!(all.published, 3);
    let events = replayed(()).await;
    assert!(events.iter().all(|(_, s, _)| s == "push"), "headers kept");
    assert_eq!(
        states(events),
        [(a.clone(), 201), (b.clone(), 201), (a.clone(), 301)]
    );

    let window = run(options(boundary - Duration::from_millis(1), None, None))
        .await
        .unwrap();
    assert_eq!(window.published, 2);
    assert_eq!(
        states(replayed(()).await),
        [(a.clone(), 201), (b.clone(), 201)]
    );

    let other = run(options(far, Some(OTHER_APPID), None)).await.unwrap();
    assert_eq!(other.published, 1);
    assert_eq!(states(replayed(()).await), [(b.clone(), 201)]);

    let one_order = run(options(far, None, Some(&a))).await.unwrap();
    assert_eq!(one_order.published, 2);
    assert_eq!(
        states(replayed(()).await),
        [(a.clone(), 201), (a.clone(), 301)]
    );

    let missing = ReplayOptions {
        to_queue: format!("{target}.missing"),
        ..options(far, None, None)
    };
    let err = run(missing).await.unwrap_err();
    assert!(matches!(err, ReplayError::NoSuchQueue(_)), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}
