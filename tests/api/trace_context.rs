//! W3C trace context: from a push into its event, from a command into its outcome.

use lapin::types::{AMQPValue, FieldTable};

use crate::support::rig::{finish, header_text, text};
use crate::support::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The event's `traceparent` and `tracestate` for one push sent with `headers`.
async fn event_trace(app: &TestApp, headers: &[(&str, &str)]) -> (String, Option<String>) {
    let (body, _) = valid_form_push();
    let mut request = reqwest::Client::new()
        .post(app.push_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let event = app.next_event().await;
    let headers = event.delivery.properties.headers().clone().unwrap();
    let state = headers
        .inner()
        .get("tracestate")
        .map(|_| header_text(&headers, "tracestate"));
    (header_text(&headers, "traceparent"), state)
}

/// The trace id of a valid version-00 traceparent; panics on anything else.
fn trace_id(traceparent: &str) -> &str {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    assert!(parts[1].len() == 32 && parts[2].len() == 16 && parts[3].len() == 2);
    assert!(traceparent
        .bytes()
        .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
    parts[1]
}

#[tokio::test]
async fn a_push_trace_continues_into_its_event_and_a_missing_or_forged_one_starts_anew() {
    let app = Harness::builder().start().await;

    let (parent, state) = event_trace(
        &app,
        &[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    assert_eq!(trace_id(&parent), TRACE_ID);
    assert_ne!(&parent[36..52], "00f067aa0ba902b7", "the relay's own hop");
    assert!(parent.ends_with("-01"));
    assert_eq!(state.as_deref(), Some("congo=t61rcWkgMzE"));

    let (fresh, state) = event_trace(&app, &[]).await;
    assert_ne!(trace_id(&fresh), TRACE_ID);
    assert_eq!(state, None);

    let long = format!("00-{}-00f067aa0ba902b7-01", "a".repeat(4000));
    for forged in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        long.as_str(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 x",
    ] {
        let (parent, state) =
            event_trace(&app, &[("traceparent", forged), ("tracestate", "evil=1")]).await;
        assert_ne!(trace_id(&parent), TRACE_ID, "{forged:.80}");
        assert_eq!(state, None, "no state without a valid parent: {forged:.80}");
    }
}

#[tokio::test]
async fn a_command_trace_continues_into_its_outcome_whose_message_id_is_stable() {
    let rig = Harness::builder().rig().await;
    let id = rig.create_orders(1).await.remove(0);
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), text(PARENT));
    headers.insert("tracestate".into(), text("congo=t61rcWkgMzE"));
    rig.send_with_headers(finish(&id).to_string().into_bytes(), headers)
        .await;
    let first = rig.outcome_messages(1).await.remove(0);
    assert_eq!(first.routing_key.as_str(), "fulfilment.succeeded");
    let h = first.properties.headers().clone().unwrap();
    let parent = header_text(&h, "traceparent");
    assert_eq!(trace_id(&parent), TRACE_ID);
    assert_ne!(&parent[36..52], "00f067aa0ba902b7");
    assert_eq!(header_text(&h, "tracestate"), "congo=t61rcWkgMzE");
    let message_id = first.properties.message_id().clone().unwrap().to_string();
    assert_eq!(message_id.len(), 32);
    assert!(message_id.bytes().all(|b| b.is_ascii_hexdigit()));

    // The same command again (as after a crash before its ack), untraced: the platform says
    // already finished, the outcome is the same message, in a trace of its own.
    rig.send(finish(&id)).await;
    let again = rig.outcome_messages(1).await.remove(0);
    assert_eq!(again.routing_key.as_str(), "fulfilment.succeeded");
    assert_eq!(
        again.properties.message_id().clone().unwrap().to_string(),
        message_id
    );
    let h = again.properties.headers().clone().unwrap();
    assert_ne!(trace_id(&header_text(&h, "traceparent")), TRACE_ID);
    assert!(!h.inner().contains_key("tracestate"));
    assert!(matches!(
        h.inner().get("traceparent"),
        Some(AMQPValue::LongString(_))
    ));

    // Another order's outcome has another id.
    let other = rig.create_orders(1).await.remove(0);
    rig.send(finish(&other)).await;
    let third = rig.outcome_messages(1).await.remove(0);
    assert_ne!(
        third.properties.message_id().clone().unwrap().to_string(),
        message_id
    );
}

/// The worker's log lines about a traced command are in the command's trace: an operator who
/// has the trace id from the consumer finds the platform call in the worker's log.
#[tokio::test]
async fn a_worker_logs_a_traced_command_under_its_trace_id() {
    let stage = Harness::builder().platform().stage().await;
    let (settings, sandbox) = (stage.settings(), stage.sandbox());
    let relay = stage.spawn(BIN, "worker", "weibo_relay=debug");
    relay.wait_ready().await;
    let id = sandbox.create_orders(APPID, 1).remove(0);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), text(PARENT));
    channel
        .basic_publish(
            "".into(),
            settings.amqp.fulfilment_queue.as_str().into(),
            Default::default(),
            finish(&id).to_string().as_bytes(),
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let call = loop {
        seen.extend(relay.logged());
        let found = seen.iter().find_map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).ok()?;
            (entry["message"] == "platform answered").then_some(entry)
        });
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no call logged:\n{}",
            seen.join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let spans = call["spans"].as_array().expect("the line lists its spans");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "fulfil" && s["trace_id"] == TRACE_ID),
        "{call}"
    );
    let _ = conn.close(200, "done".into()).await;
    relay.signal("TERM").await;
}
