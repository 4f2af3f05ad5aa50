//! The stage's tap as provider tests read it: each message checked against the schemas
//! docs/asyncapi.yaml names.

use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use weibo_relay::settings::Settings;
use weibo_relay_tooling::stage;

/// The next message on the stage's tap within 20 s: routing key, `x-weibo-merchant`, body;
/// its body, headers and properties checked against the schemas docs/asyncapi.yaml names.
pub(crate) async fn next_event(settings: &Settings) -> (String, String, serde_json::Value) {
    let connection = stage::connect_url(&settings.amqp.url, "provider test")
        .await
        .expect("the broker");
    let channel = connection.create_channel().await.expect("a channel");
    let queue = stage::tap_queue(settings);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if let Some(message) = got {
            let delivery = message.delivery;
            let headers: serde_json::Map<String, serde_json::Value> = delivery
                .properties
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .filter_map(|(k, v)| match v {
                            AMQPValue::LongString(s) => {
                                Some((k.to_string(), serde_json::Value::from(s.to_string())))
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let merchant = headers
                .get("x-weibo-merchant")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let body = serde_json::from_slice(&delivery.data).expect("a JSON event");
            let p = &delivery.properties;
            let properties = serde_json::json!({
                "delivery_mode": p.delivery_mode(),
                "content_type": p.content_type().as_ref().map(ToString::to_string),
                "message_id": p.message_id().as_ref().map(ToString::to_string),
                "type": p.kind().as_ref().map(ToString::to_string),
                "timestamp": p.timestamp(),
            });
            let kind = if delivery.routing_key.as_str().starts_with("merchant.") {
                "merchant-event"
            } else {
                "event"
            };
            assert_schema(&format!("{kind}.json"), &body);
            assert_schema(&format!("properties-{kind}.json"), &properties);
            assert_schema(&format!("headers-{kind}.json"), &headers.into());
            let _ = connection.close(200, "read".into()).await;
            return (delivery.routing_key.to_string(), merchant, body);
        }
        assert!(Instant::now() < deadline, "no merchant event within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Panics with every error when `instance` does not match `docs/schemas/<file>`.
fn assert_schema(file: &str, instance: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema reads"))
            .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{file}: {errors:?}\n{instance:#}");
}
