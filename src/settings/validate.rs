//! The checks every loaded configuration passes: each value in a range that works, so a
//! configuration that loads (and that `check` passes) is one the relay can run.

use std::time::Duration;

use super::{ConfigError, Settings};

/// The largest `x-message-ttl` or `x-expires` RabbitMQ accepts, in milliseconds (its
/// `MAX_EXPIRY_TIMER`, ten years): a declaration above it is refused with PRECONDITION_FAILED.
pub const BROKER_MAX_EXPIRY_MS: u64 = 315_360_000_000;

/// The most threads actix serves one listener with (it panics beyond).
pub const MAX_HTTP_WORKERS: usize = 512;

/// `weibo.retry_max_ms` at most: a delay queue's `x-expires` is its delay plus a day of grace,
/// and must stay within [`BROKER_MAX_EXPIRY_MS`].
pub const MAX_RETRY_MS: u64 =
    BROKER_MAX_EXPIRY_MS - crate::worker::retry::DELAY_QUEUE_GRACE.as_secs() * 1000;

/// Each number with a range of its own: (key, least, most, why), documented as "`least` to
/// `most`" in `defaults.toml` and README's configuration table (a test holds both to this).
pub(super) const RANGES: [(&str, u64, u64, &str); 19] = [
    ("http.max_body_bytes", 1, 16 << 20, "each open connection may buffer one body"),
    ("http.body_timeout_ms", 1, 600_000, "the platform gives up on an answer long before"),
    ("http.max_connections", 1, 100_000, "0 would serve nobody"),
    ("http.shutdown_timeout_secs", 0, 3600, "a stop must not wait for hours"),
    ("http.workers", 0, MAX_HTTP_WORKERS as u64, "0 is one per core; the HTTP server runs at most 512 threads"),
    ("push.max_skew_secs", 1, u32::MAX as u64, "0 would refuse nearly every push"),
    ("push.dedup_capacity", 0, 10_000_000, "each remembered id takes about 50 bytes"),
    ("amqp.confirm_timeout_ms", 1, 60_000, "a push waits this long for its answer"),
    ("amqp.reconnect_max_ms", 1, 300_000, "a lost broker must be retried within minutes"),
    ("amqp.heartbeat_secs", 1, 600, "0 turns heartbeats off and a dead link is never noticed"),
    ("weibo.timeout_ms", 1, 300_000, "one platform call"),
    ("weibo.max_attempts", 1, 30, "one delay queue per attempt"),
    ("weibo.retry_max_ms", 1, MAX_RETRY_MS, "RabbitMQ refuses a queue expiry beyond 10 years, and a delay queue expires a day after its delay"),
    ("weibo.rate_limit_per_sec", 1, 5000, "every permit is a message on the broker"),
    ("worker.prefetch", 1, 65_535, "0 would mean no limit: the whole queue delivered at once"),
    ("worker.concurrency", 1, 4096, "0 would start no command and hold the fetched ones forever"),
    ("worker.token_wait_ms", 1, 600_000, "a command waits this long for a token or a permit"),
    ("reconcile.interval_secs", 1, 86_400, "at least one sweep a day"),
    ("reconcile.lookback_secs", 1, 365 * 86_400, "a year at most"),
];

impl Settings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.push.path.starts_with('/') {
            return Err(ConfigError::invalid("push.path", "must start with '/'"));
        }
        self.numbers()?;
        for (key, name) in [
            ("amqp.events_exchange", &self.amqp.events_exchange),
            ("amqp.events_queue", &self.amqp.events_queue),
            ("amqp.fulfilment_queue", &self.amqp.fulfilment_queue),
        ] {
            if name.is_empty() || name.len() > 200 {
                return Err(ConfigError::invalid(key, "must be 1 to 200 characters"));
            }
        }
        for (key, url) in [
            ("weibo.api_base", &self.weibo.api_base),
            ("weibo.oauth_base", &self.weibo.oauth_base),
        ] {
            check_platform_url(url, self.weibo.allow_insecure_http)
                .map_err(|why| ConfigError::invalid(key, why))?;
        }
        self.weibo.codes.validate()?;
        self.reconcile_window()?;
        self.amqp.endpoints()?;
        self.amqp.tls()?;
        if actix_web::http::header::HeaderValue::from_str(&self.push.success_content_type).is_err()
        {
            return Err(ConfigError::invalid(
                "push.success_content_type",
                "is not a valid header value",
            ));
        }
        self.merchants.validate()
    }

    /// What a relay process (`serve`, `receiver`, `worker`) needs beyond what every command
    /// needs: a merchant to take pushes for and to call the platform for. `check` applies this
    /// same rule, so it fails exactly where those commands would refuse to start.
    pub fn validate_for_relay(&self) -> Result<(), ConfigError> {
        if self.merchants.is_empty() {
            return Err(ConfigError::invalid(
                "merchants",
                "at least one [[merchants]] entry is required",
            ));
        }
        Ok(())
    }

    /// Every number in the range documented in `defaults.toml` and README: outside it a value
    /// hangs (0 where 0 means "never"), panics (durations that overflow) or is refused by the
    /// broker after the start.
    fn numbers(&self) -> Result<(), ConfigError> {
        let (a, w, r) = (&self.amqp, &self.weibo, &self.reconcile);
        let fixed = RANGES
            .iter()
            .map(|&(key, min, max, why)| (key, self.number(key), min, max, why));
        // Those bounded by another key.
        let relative = [
            (
                "amqp.reconnect_min_ms",
                a.reconnect_min_ms,
                1,
                a.reconnect_max_ms,
                "at most amqp.reconnect_max_ms",
            ),
            (
                "weibo.retry_base_ms",
                w.retry_base_ms,
                1,
                w.retry_max_ms,
                "at most weibo.retry_max_ms",
            ),
            (
                "reconcile.settle_secs",
                r.settle_secs,
                0,
                r.lookback_secs.saturating_sub(1),
                "less than reconcile.lookback_secs",
            ),
        ];
        for (key, value, min, max, why) in fixed.chain(relative) {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be {min} to {max} (got {value}): {why}"),
                ));
            }
        }
        Ok(())
    }

    /// The value of a key of [`RANGES`].
    fn number(&self, key: &str) -> u64 {
        let (h, p, a, w) = (&self.http, &self.push, &self.amqp, &self.weibo);
        let (wk, r) = (&self.worker, &self.reconcile);
        let n = |v: usize| v as u64;
        match key {
            "http.max_body_bytes" => n(h.max_body_bytes),
            "http.body_timeout_ms" => h.body_timeout_ms,
            "http.max_connections" => n(h.max_connections),
            "http.shutdown_timeout_secs" => h.shutdown_timeout_secs,
            "http.workers" => n(h.workers),
            "push.max_skew_secs" => p.max_skew_secs,
            "push.dedup_capacity" => n(p.dedup_capacity),
            "amqp.confirm_timeout_ms" => a.confirm_timeout_ms,
            "amqp.reconnect_max_ms" => a.reconnect_max_ms,
            "amqp.heartbeat_secs" => u64::from(a.heartbeat_secs),
            "weibo.timeout_ms" => w.timeout_ms,
            "weibo.max_attempts" => u64::from(w.max_attempts),
            "weibo.retry_max_ms" => w.retry_max_ms,
            "weibo.rate_limit_per_sec" => u64::from(w.rate_limit_per_sec),
            "worker.prefetch" => u64::from(wk.prefetch),
            "worker.concurrency" => n(wk.concurrency),
            "worker.token_wait_ms" => wk.token_wait_ms,
            "reconcile.interval_secs" => r.interval_secs,
            "reconcile.lookback_secs" => r.lookback_secs,
            // Every key of RANGES has its arm (a test walks them all).
            _ => u64::MAX,
        }
    }

    /// The event log's retention in a form RabbitMQ takes, and, while reconciliation runs, a
    /// retention that covers the sweep's window: a state older than the log is missing from
    /// it, and every sweep would publish it again.
    fn reconcile_window(&self) -> Result<(), ConfigError> {
        let age = &self.event_log.max_age;
        let Some(retention) = max_age(age) else {
            return Err(ConfigError::invalid(
                "event_log.max_age",
                "must be a number from 1 to 4294967295 and a unit: Y, M, D, h, m or s (such as 7D)",
            ));
        };
        let margin = crate::reconcile::LOG_MARGIN;
        let window = Duration::from_secs(self.reconcile.lookback_secs).saturating_add(margin);
        if self.reconcile.enabled && window > retention {
            return Err(ConfigError::invalid(
                "reconcile.lookback_secs",
                format!(
                    "must be at most {} with event_log.max_age = {age:?} (the log must cover the window and {} s before it): an older state is no longer in the log, and every sweep would publish it again",
                    retention.saturating_sub(margin).as_secs(),
                    margin.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

/// RabbitMQ's `x-max-age` (`7D`: a number and one of Y, M, D, h, m, s) as a duration, with
/// its units (a year of 365 days, a month of 30).
pub(super) fn max_age(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count = u64::from(number.parse::<u32>().ok().filter(|&n| n > 0)?);
    let unit_secs = match unit {
        "Y" => 365 * 86_400,
        "M" => 30 * 86_400,
        "D" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    Some(Duration::from_secs(count.checked_mul(unit_secs)?))
}

/// Where the platform client may go: HTTPS, or plain HTTP to this machine (the sandbox), or
/// plain HTTP anywhere only when `weibo.allow_insecure_http` says so. The token and the
/// signed requests travel in these calls.
fn check_platform_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = super::amqp::is_loopback(parsed.host_str().ok_or("has no host")?);
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure_http => Ok(()),
        "http" => Err(
            "must be https:// (plain http is allowed only to loopback, or with weibo.allow_insecure_http = true)"
                .into(),
        ),
        other => Err(format!("scheme {other} is not https")),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
