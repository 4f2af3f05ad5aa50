//! `bench broker`: the receiver's publishes without the receiver. The same envelope and
//! properties, persistent and mandatory, through the topology the receiver declares (a topic
//! exchange routing `order.#` to the event log stream) plus the quorum queue `bench push
//! --verify-queue` binds to count what was stored, on one confirm channel with C in flight (as
//! the relay has): the ceiling the receiver can approach on this machine, for the same work
//! asked of the broker as in `bench push`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{drive, push::signed_push, run_id, BenchError, Load, Report};
use weibo_relay::amqp::{Names, Outgoing, PublishError, Topology};
use weibo_relay::push::{Body, ContentKind, UnverifiedPush};
use weibo_relay::settings::{Merchants, Settings};
use weibo_relay::startup::Roles;

/// Beyond this a confirm counts as lost (the relay's default is 3 s; this only bounds a run).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What `bench broker` publishes, and where.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Broker URL.
    pub amqp_url: weibo_relay::settings::AmqpUrl,
    /// How much load.
    pub load: Load,
}

/// Publishes to a queue of its own, reports, and deletes the queue.
pub async fn run(options: BrokerOptions) -> Result<Report, BenchError> {
    options.load.validate()?;
    let (body, properties, routing_key) = sample_event()?;
    let conn = crate::stage::connect_url(&options.amqp_url, "weibo-relay bench broker")
        .await
        .map_err(BenchError::Setup)?;
    let channel = weibo_relay::amqp::confirm_channel(&conn).await?;
    let defaults = Settings::load(None, std::iter::empty::<(String, String)>())
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let names = crate::stage::isolated(defaults, "weibo-relay-bench-broker");
    let verify = &names.amqp.events_queue;
    let topology = Topology::for_roles(&Names::new(&names.amqp), &names, Roles::Receiver)
        .queue(weibo_relay::amqp::QueueSpec::quorum(verify))
        .bind(verify, &names.amqp.events_exchange, "order.#");
    topology.declare(&conn).await?;
    let (body, target) = (
        Arc::new(body),
        Arc::new((names.amqp.events_exchange.clone(), routing_key)),
    );
    let publisher = channel.clone();
    let (samples, elapsed) = drive(options.load, CONFIRM_TIMEOUT, move |_| {
        let (channel, body, target, properties) = (
            publisher.clone(),
            body.clone(),
            target.clone(),
            properties.clone(),
        );
        async move {
            let (exchange, routing_key) = target.as_ref();
            let stored = weibo_relay::amqp::publish_confirmed(
                &channel,
                Outgoing {
                    exchange,
                    routing_key,
                    body: &body,
                    properties,
                },
            )
            .await;
            match stored {
                Ok(()) => "ack",
                Err(PublishError::Returned { .. }) => "returned",
                Err(PublishError::Nacked) => "nack",
                Err(_) => "error",
            }
            .to_owned()
        }
    })
    .await;
    let deleted = crate::stage::delete_on(&channel, &topology).await;
    let _ = conn.close(200, "bench done".into()).await;
    deleted?;
    Ok(Report::new(
        "broker",
        options.load.concurrency,
        options.load.events,
        samples,
        elapsed,
    ))
}

/// The envelope, properties and routing key the receiver would publish for one bench push.
fn sample_event() -> Result<(Vec<u8>, lapin::BasicProperties, String), BenchError> {
    let (appid, key, now) = ("100023", "bench-sign-key-0123456789", 1_700_000_000);
    let merchant = crate::stage::merchant(
        appid,
        key,
        "772915",
        "bench-client-secret-0123",
        "1404376560",
    );
    let keys = weibo_relay::keys::MerchantKeys::derive(&merchant);
    let merchants = Merchants::new(vec![merchant]);
    let body = signed_push(appid, key, &run_id(), 0, now);
    let push = Body::parse(ContentKind::Form, body.as_bytes())
        .and_then(UnverifiedPush::parse)
        .and_then(|p| p.verify(&merchants, now, std::time::Duration::from_secs(300)))
        .map_err(|e| BenchError::Setup(format!("sample push: {e}")))?;
    let publication = push.event().publication(
        SystemTime::now(),
        &weibo_relay::trace::TraceContext::next_hop(None),
        &keys,
    );
    Ok((
        publication.body,
        publication.properties,
        publication.routing_key,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_event_is_the_size_of_a_real_envelope() {
        let (body, properties, routing_key) = super::sample_event().unwrap();
        assert_eq!(routing_key, "order.sub_order.201");
        // The generated push makes an envelope of about 1 KB, like a real order event.
        assert!((900..2000).contains(&body.len()), "{}", body.len());
        assert_eq!(properties.delivery_mode(), &Some(2));
    }
}
