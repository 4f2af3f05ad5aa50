//! `bench push`: distinct, correctly signed pushes to a receiver over C keep-alive
//! connections, then optionally a count of what reached the events queue.

use std::time::Duration;

use serde_json::json;

use super::{drive, queue_depth, run_id, BenchError, Load, QueueCheck, Report};
use weibo_relay::signature;

/// The platform drops a push not answered within 5 s; a bench request waits a bit longer so
/// a slow answer is measured rather than cut.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What `bench push` sends, where, and what it checks afterwards.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The receiver's push URL.
    pub url: String,
    /// The merchant's appid.
    pub appid: String,
    /// The merchant's sign key.
    pub sign_key: String,
    /// How much load.
    pub load: Load,
    /// Count this queue afterwards and compare with the 200 answers. The relay declares no
    /// queue for events besides its log: a queue that does not exist is declared for the run,
    /// bound to every order event of `events_exchange`, and deleted afterwards.
    pub verify_queue: Option<String>,
    /// The receiver's `amqp.events_exchange`, which a verification queue is bound to.
    pub events_exchange: String,
    /// Broker URL for the queue count.
    pub amqp_url: weibo_relay::settings::AmqpUrl,
    /// The receiver's process, to count the CPU it spends per push (Linux `/proc`).
    pub relay_pid: Option<u32>,
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub(super) fn cpu_secs(pid: u32) -> Result<f64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| BenchError::Invalid(format!("--relay-pid {pid}: {e}")))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name and the state.
    Ok((ticks(11) + ticks(12)) / USER_HZ)
}

/// Microseconds of CPU process `pid` used since it had used `before` seconds, per one of
/// `completed` items.
pub(super) fn cpu_us_per(pid: u32, before: f64, completed: u64) -> Result<f64, BenchError> {
    let used = cpu_secs(pid)? - before;
    Ok(used * 1e6 / completed.max(1) as f64)
}

/// The unit of `/proc/PID/stat` times: fixed at 100 a second by Linux's user-space ABI.
const USER_HZ: f64 = 100.0;

/// The form-encoded body of push `seq` of run `run`: a paid sub order whose id is unique in
/// the run, signed as the platform signs (md5 over the sorted fields and the key).
pub fn signed_push(appid: &str, sign_key: &str, run: &str, seq: u64, timestamp: i64) -> String {
    // The run id in `data` keeps event ids distinct across runs against one relay, whose
    // dedup would otherwise answer a repeated run with duplicates that are never published.
    let data = json!({
        "recharge_account_type": "1",
        "recharge_account": "13800000000",
        "sub_order_id": (366_383_890_000_000u64 + seq).to_string(),
        "state_code": 201,
        "addtime": "2022-07-21 12:15:02",
        "pay_time": "2022-07-21 12:15:09",
        "buyer_id": "1766",
        "sku_list": [{"goods_id": "1083814100038", "sku_id": "3924", "state_code": 502,
                      "sold_state_code": 601, "pin": ""}],
        "buyer": {"weibo_uid": "6748678500"},
        "expect_finish_time": "2099-01-01 00:00:00",
        "finish_type": 1,
        "is_timeout": 0,
        "contact_phone": "13800000000",
        "bench_run": run,
    })
    .to_string();
    let timestamp = timestamp.to_string();
    let nonce = format!("{run}{seq:016x}");
    let mut fields = vec![
        ("appid", appid),
        ("type", "2"),
        ("data", data.as_str()),
        ("timestamp", timestamp.as_str()),
        ("nonce", nonce.as_str()),
        ("sign_type", "md5"),
    ];
    let sign = signature::sign(fields.iter().copied(), sign_key);
    fields.push(("sign", sign.as_str()));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Sends the pushes and reports; with `verify_queue`, also the queue's count.
pub async fn run(options: PushOptions) -> Result<Report, BenchError> {
    options.load.validate()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.load.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let (before, tapped) = match &options.verify_queue {
        Some(queue) => {
            let tapped =
                super::tap_if_absent(&options.amqp_url, queue, &options.events_exchange).await?;
            (Some(queue_depth(&options.amqp_url, queue).await?), tapped)
        }
        None => (None, None),
    };
    let cpu_before = options.relay_pid.map(cpu_secs).transpose()?;
    let run = run_id();
    let (url, appid, key) = (
        std::sync::Arc::new(options.url.clone()),
        std::sync::Arc::new(options.appid.clone()),
        std::sync::Arc::new(options.sign_key.clone()),
    );
    let (samples, elapsed) = drive(options.load, REQUEST_TIMEOUT, move |seq| {
        let (http, url, appid, key, run) = (
            http.clone(),
            url.clone(),
            appid.clone(),
            key.clone(),
            run.clone(),
        );
        async move {
            let body = signed_push(
                &appid,
                &key,
                &run,
                seq,
                weibo_relay::clock::unix_secs() as i64,
            );
            let answer = http
                .post(url.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await;
            super::answer_label(answer).await
        }
    })
    .await;
    let mut report = Report::new(
        "push",
        options.load.concurrency,
        options.load.events,
        samples,
        elapsed,
    );
    if let (Some(pid), Some(before)) = (options.relay_pid, cpu_before) {
        report.relay_cpu_us_per_push = Some(cpu_us_per(pid, before, report.completed)?);
    }
    if let (Some(queue), Some(before)) = (&options.verify_queue, before) {
        let after = queue_depth(&options.amqp_url, queue).await?;
        let added = after.saturating_sub(before);
        report.queue = Some(QueueCheck {
            queue: queue.clone(),
            messages: added,
            difference: added as i64 - report.answered("200") as i64,
        });
    }
    if let Some(tap) = tapped {
        tap.run()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weibo_relay::push::{Body, ContentKind, UnverifiedPush};
    use weibo_relay::settings::Settings;

    fn merchants() -> weibo_relay::settings::Merchants {
        Settings::from_toml(
            "[[merchants]]\nappid = \"100023\"\nsign_key = \"k3y-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"s-0123456789abcdef\"\nuid = \"1404376560\"\n",
        )
        .unwrap()
        .merchants
    }

    fn verified(body: &str, now: i64) -> weibo_relay::push::VerifiedPush {
        let push = UnverifiedPush::parse(Body::parse(ContentKind::Form, body.as_bytes()).unwrap())
            .unwrap();
        push.verify(&merchants(), now, std::time::Duration::from_secs(300))
            .unwrap()
    }

    #[test]
    fn generated_pushes_verify_and_are_distinct_events() {
        let now = 1_700_000_000;
        let a = verified(
            &signed_push("100023", "k3y-0123456789abcdef", "run1", 0, now),
            now,
        );
        let b = verified(
            &signed_push("100023", "k3y-0123456789abcdef", "run1", 1, now),
            now,
        );
        let c = verified(
            &signed_push("100023", "k3y-0123456789abcdef", "run2", 0, now),
            now,
        );
        assert_ne!(a.event_id(), b.event_id());
        assert_ne!(a.event_id(), c.event_id());
        assert_eq!(a.sub_order_id().as_deref(), Some("366383890000000"));
        assert_eq!(a.routing_key(), "order.sub_order.201");
    }

    #[test]
    fn a_wrong_key_does_not_verify() {
        let body = signed_push("100023", "other", "run1", 0, 1_700_000_000);
        let push = UnverifiedPush::parse(Body::parse(ContentKind::Form, body.as_bytes()).unwrap())
            .unwrap();
        assert!(push
            .verify(
                &merchants(),
                1_700_000_000,
                std::time::Duration::from_secs(300)
            )
            .is_err());
    }
}
