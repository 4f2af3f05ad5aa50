//! The shipped sample pushes are accepted by a relay configured with the shipped merchant.

use weibo_relay::settings::Settings;

use crate::support::*;

#[tokio::test]
async fn the_fixture_pushes_are_accepted_as_one_event() {
    // The shipped merchant, as a reader of the README would load it.
    let shipped = Settings::from_toml(include_str!("../../fixtures/merchant.toml")).unwrap();
    let mut settings = test_settings(AMQP_URL);
    settings.merchants = shipped.merchants;
    // The fixtures were signed at 1700000000: widen the window instead of re-signing them.
    settings.push.max_skew_secs = 4_000_000_000.try_into().unwrap();
    let app = Harness::builder().base(settings).start().await;

    // Byte for byte as `curl --data-binary @fixtures/push-form.txt` sends it: no newline at
    // the end, which would become part of the last value and break the signature.
    let form = include_str!("../../fixtures/push-form.txt");
    assert!(
        !form.ends_with('\n'),
        "the fixture must not end in a newline"
    );
    app.post_form(form.to_owned()).await.assert_success();
    let json = include_str!("../../fixtures/push.json");
    app.post_push("application/json", json)
        .await
        .assert_success();

    let msg = app.next_event().await;
    let id = msg.delivery.properties.message_id().clone().unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(envelope["event_id"], id.as_str());
    assert_eq!(envelope["sub_order_id"], "366383890000352");
    assert_eq!(envelope["params"]["nonce"], "5f0c2a");
    assert_eq!(app.queue_depth().await, 0, "the JSON copy was a duplicate");
}
