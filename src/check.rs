//! `weibo-relay check`: whether a configuration will work, before a deploy. One line per
//! check; nothing is changed on the broker (but for an exclusive queue of its own, gone with
//! its connection, to listen for the keeper's heartbeat), no token is requested, no secret is
//! printed.

use std::fmt;
use std::time::{Duration, Instant};

use crate::amqp::{Names, Topology};
use crate::settings::{ConfigError, Merchant, Settings};
use crate::startup::Roles;

mod gateway;
mod keeper;
mod store;
mod topology;

use topology::Found;

/// How long one network check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One check's result.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// It will work.
    Ok,
    /// It will work, and there is something to know.
    Note,
    /// It will not work.
    Fail,
}

/// One line of the report.
#[derive(Debug)]
pub struct Line {
    /// Pass, note or fail.
    pub status: Status,
    /// What was checked (`broker amqp://relay:[redacted]@host:5672/%2f`).
    pub what: String,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "ok  ",
            Status::Note => "note",
            Status::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.detail)
    }
}

fn line(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Line {
    Line {
        status,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs every check for `settings` (already loaded: loading is the first check).
pub async fn run(settings: &Settings) -> Vec<Line> {
    // The rule serve, receiver and worker apply at start: check fails where they would refuse.
    let loaded = match settings.validate_for_relay() {
        Ok(()) => line(
            Status::Ok,
            "configuration",
            match &settings.provider {
                Some(p) => format!("loaded, provider mode (appid {})", p.config().appid),
                None => format!("loaded, {} merchant(s)", settings.merchants.len()),
            },
        ),
        Err(ConfigError::Invalid { key, reason }) => line(
            Status::Fail,
            "configuration",
            format!("{key}: {reason}: serve, receiver and worker refuse to start"),
        ),
        Err(other) => line(Status::Fail, "configuration", other.to_string()),
    };
    let mut lines = vec![loaded];
    lines.extend(broker(settings).await);
    for (key, base) in [
        ("weibo.api_base", &settings.weibo.api_base),
        ("weibo.oauth_base", &settings.weibo.oauth_base),
    ] {
        lines.push(platform_host(key, base).await);
    }
    for merchant in settings.merchants.iter() {
        lines.push(merchant_shape(merchant));
    }
    lines.extend(gateway::clients(settings).await);
    if let Some(provider) = &settings.provider {
        lines.push(store::store(provider.config()).await);
    }
    lines
}

/// Every node of `amqp.url(s)`, then the topology on the first node reached.
async fn broker(settings: &Settings) -> Vec<Line> {
    let mut lines = Vec::new();
    let tls = settings.amqp.tls();
    let mut reached = None;
    for crate::settings::Endpoint { uri, shown: node } in settings.amqp.endpoints() {
        let started = Instant::now();
        match crate::amqp::connect_node(&uri, &tls, "weibo-relay check").await {
            Ok(connection) => {
                lines.push(line(
                    Status::Ok,
                    format!("broker {node}"),
                    format!("connected in {} ms", started.elapsed().as_millis()),
                ));
                if reached.is_none() {
                    reached = Some(connection);
                } else {
                    let _ = connection.close(200, "checked".into()).await;
                }
            }
            Err(why) => lines.push(line(Status::Fail, format!("broker {node}"), why)),
        }
    }
    let Some(connection) = reached else {
        return lines;
    };
    let names = Names::new(&settings.amqp);
    let topology = Topology::for_roles(&names, settings, Roles::Serve);
    match topology::verify(&topology, &connection).await {
        Ok(found) => lines.extend(found.into_iter().map(|(what, found)| match found {
            Found::Matches => line(Status::Ok, what, "exists as the relay declares it"),
            Found::Absent => line(Status::Ok, what, "absent; the relay declares it at start"),
            Found::Kept(reason) => line(
                Status::Note,
                what,
                format!("exists with other arguments, which the relay keeps (change them with a policy): {reason}"),
            ),
            Found::Differs(reason) => line(
                Status::Fail,
                what,
                format!("exists with other arguments: the relay would not start. Empty and delete it, or declare it as the relay does: {reason}"),
            ),
        })),
        Err(e) => lines.push(line(Status::Fail, "topology", e.to_string())),
    }
    lines.extend(leftover_events_queue(&connection, &names).await);
    lines.push(keeper::leader(settings, &names, &connection).await);
    let _ = connection.close(200, "checked".into()).await;
    lines
}

/// The host of `base` resolves and answers HTTPS (any status: nothing is called).
async fn platform_host(key: &str, url: &url::Url) -> Line {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let what = format!("{key} {host}");
    let addresses =
        match tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(found)) => found.count(),
            Ok(Err(e)) => return line(Status::Fail, what, format!("does not resolve: {e}")),
            Err(_) => return line(Status::Fail, what, "no DNS answer within 5 s"),
        };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return line(Status::Fail, what, e.to_string()),
    };
    let started = Instant::now();
    match client.get(url.clone()).send().await {
        Ok(answer) => line(
            Status::Ok,
            what,
            format!(
                "resolves ({addresses} address(es)), answered HTTP {} in {} ms",
                answer.status().as_u16(),
                started.elapsed().as_millis()
            ),
        ),
        Err(e) => line(
            Status::Fail,
            what,
            format!(
                "resolves, but cannot be reached: {}",
                crate::telemetry::error_chain(&e)
            ),
        ),
    }
}

/// The credentials' shape was checked when the configuration loaded (digits where the
/// platform uses digits, secrets long enough). No token is requested: a new token ends the one
/// the running relay holds.
fn merchant_shape(m: &Merchant) -> Line {
    line(
        Status::Ok,
        format!("merchant {}", m.appid()),
        "appid, client_id and uid are numbers, secrets are set; no token requested \
         (a new token would end the one the running relay holds)",
    )
}

/// `amqp.events_queue` as releases before this one declared it: a queue bound to every event
/// that nothing in the relay reads. Left alone it fills until RabbitMQ's memory or disk alarm
/// stops every publish (and every push gets 503); the event log stream keeps the events.
async fn leftover_events_queue(connection: &lapin::Connection, names: &Names) -> Option<Line> {
    let (queue, log) = (names.events_queue(), names.event_log());
    let what = format!("queue {queue}");
    match crate::amqp::topology::queue_stats(connection, queue).await {
        Ok(None) => None,
        Ok(Some(stats)) if stats.consumers == 0 => Some(line(
            Status::Fail,
            what,
            format!(
                "left by an earlier release: {} message(s), no consumer, and every event adds one \
                 until RabbitMQ's memory or disk alarm blocks all publishing. The relay no longer \
                 declares it ({log} keeps every event): delete it with \
                 `rabbitmqctl delete_queue {queue}`",
                stats.messages
            ),
        )),
        Ok(Some(stats)) => Some(line(
            Status::Note,
            what,
            format!(
                "left by an earlier release, read by {} consumer(s), {} message(s) waiting. The \
                 relay no longer declares it ({log} keeps every event): whoever reads it owns it \
                 now; give it a length limit (`rabbitmqctl set_policy ... '{{\"max-length\":100000}}'`) \
                 or move the consumer to a queue of its own",
                stats.consumers, stats.messages
            ),
        )),
        Err(e) => Some(line(Status::Fail, what, e.to_string())),
    }
}
