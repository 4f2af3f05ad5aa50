//! Every queue and exchange name the relay (and its tools) use, derived in one place from the
//! three configured names, so two deployments on one vhost never share anything and a
//! deployment's permissions can be granted by prefix.

use std::time::Duration;

use crate::settings::AmqpSettings;

/// The names of one deployment's queues and exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    events_exchange: String,
    events_queue: String,
    event_log: String,
    fulfilment: String,
    dead: String,
    keeper: String,
    tokens: String,
    permits: String,
}

impl Names {
    /// The names derived from `amqp.events_exchange`, `events_queue` and `fulfilment_queue`.
    pub fn new(amqp: &AmqpSettings) -> Self {
        let fulfilment = amqp.fulfilment_queue.clone();
        Self {
            events_exchange: amqp.events_exchange.clone(),
            events_queue: amqp.events_queue.clone(),
            event_log: format!("{}.log", amqp.events_queue),
            dead: format!("{fulfilment}.dead"),
            keeper: format!("{fulfilment}.keeper"),
            tokens: format!("{fulfilment}.tokens"),
            permits: format!("{fulfilment}.permits"),
            fulfilment,
        }
    }

    /// `events_exchange`: the topic exchange events and outcomes are published to.
    pub fn events_exchange(&self) -> &str {
        &self.events_exchange
    }

    /// `events_queue`: the queue earlier releases declared (the relay no longer does; `check`
    /// and the broker link look for one left behind).
    pub fn events_queue(&self) -> &str {
        &self.events_queue
    }

    /// `<events_queue>.log`: the stream every order event is kept in.
    pub fn event_log(&self) -> &str {
        &self.event_log
    }

    /// `fulfilment_queue`: the work queue of fulfilment commands.
    pub fn fulfilment(&self) -> &str {
        &self.fulfilment
    }

    /// `<fulfilment_queue>.dead`: dead-lettered commands.
    pub fn dead(&self) -> &str {
        &self.dead
    }

    /// `<fulfilment_queue>.retry.<delay in ms>ms`: the delay queue for `delay`.
    pub fn retry(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.fulfilment, delay.as_millis())
    }

    /// `<fulfilment_queue>.keeper`: the single-active-consumer queue whose active consumer
    /// leads; requests to the leader go there too.
    pub fn keeper(&self) -> &str {
        &self.keeper
    }

    /// `<fulfilment_queue>.tokens`: the topic exchange tokens and the leader's heartbeats
    /// are announced on.
    pub fn tokens(&self) -> &str {
        &self.tokens
    }

    /// `<fulfilment_queue>.permits`: the queue of platform call permits.
    pub fn permits(&self) -> &str {
        &self.permits
    }

    /// `<fulfilment_queue>.tokens.<process>`: one process's own queue on the tokens exchange.
    pub fn token_inbox(&self, process: &str) -> String {
        format!("{}.{process}", self.tokens)
    }

    /// `<fulfilment_queue>.tokens.check.<id>`: where `check` listens for the leader's
    /// heartbeat (named from the configured names, so the relay's own permissions allow it).
    pub fn heartbeat_listener(&self, id: &str) -> String {
        format!("{}.check.{id}", self.tokens)
    }

    /// `<events_exchange>.replay.<id>`: the exchange one replay routes its events through.
    pub fn replay_exchange(&self, id: &str) -> String {
        format!("{}.replay.{id}", self.events_exchange)
    }

    /// `<events_queue>.tap`: the queue tests and tools bind to every order event to read
    /// what the relay published (the relay itself declares none).
    pub fn tap(&self) -> String {
        self.consumer("tap")
    }

    /// `<events_queue>.<consumer>`: a consumer's own queue of events (the demo's sample
    /// consumer), named from the configured names like everything of the deployment.
    pub fn consumer(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.events_queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_a_configured_one() {
        let settings = crate::settings::Settings::from_toml("").unwrap();
        let names = Names::new(&settings.amqp);
        assert_eq!(names.events_exchange(), "weibo.events");
        assert_eq!(names.events_queue(), "weibo.orders");
        assert_eq!(names.event_log(), "weibo.orders.log");
        assert_eq!(names.fulfilment(), "weibo.fulfilment");
        assert_eq!(names.dead(), "weibo.fulfilment.dead");
        assert_eq!(
            names.retry(Duration::from_secs(5)),
            "weibo.fulfilment.retry.5000ms"
        );
        assert_eq!(names.keeper(), "weibo.fulfilment.keeper");
        assert_eq!(names.tokens(), "weibo.fulfilment.tokens");
        assert_eq!(names.permits(), "weibo.fulfilment.permits");
        assert_eq!(names.token_inbox("p1"), "weibo.fulfilment.tokens.p1");
        assert_eq!(
            names.heartbeat_listener("c1"),
            "weibo.fulfilment.tokens.check.c1"
        );
        assert_eq!(names.replay_exchange("r1"), "weibo.events.replay.r1");
        assert_eq!(names.tap(), "weibo.orders.tap");
        assert_eq!(names.consumer("sample"), "weibo.orders.sample");
    }
}
