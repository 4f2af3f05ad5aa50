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
mod tests {
    use super::*;

    const MERCHANT: &str = "[[merchants]]\nappid = \"100023\"\nsign_key = \"k3y-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"appsecret-0123456789\"\nuid = \"1404376560\"\n";

    fn refused(toml: &str) -> String {
        Settings::from_toml(&format!("{toml}\n{MERCHANT}"))
            .unwrap_err()
            .to_string()
    }

    fn accepted(toml: &str) {
        if let Err(e) = Settings::from_toml(&format!("{toml}\n{MERCHANT}")) {
            panic!("{toml}: {e}");
        }
    }

    #[test]
    fn the_values_that_hung_panicked_or_were_refused_by_the_broker_stop_the_start() {
        for (toml, key) in [
            ("[worker]\nconcurrency = 0", "worker.concurrency"),
            ("[worker]\nprefetch = 0", "worker.prefetch"),
            (
                "[reconcile]\nlookback_secs = 9223372036854775807",
                "reconcile.lookback_secs",
            ),
            (
                "[weibo]\nretry_max_ms = 9223372036854775807",
                "weibo.retry_max_ms",
            ),
            ("[weibo]\nretry_base_ms = 600001", "weibo.retry_base_ms"),
            ("[http]\nworkers = 513", "http.workers"),
            ("[amqp]\nheartbeat_secs = 0", "amqp.heartbeat_secs"),
            (
                "[amqp]\nreconnect_max_ms = 9223372036854775807",
                "amqp.reconnect_max_ms",
            ),
            ("[amqp]\nreconnect_min_ms = 6000", "amqp.reconnect_min_ms"),
            ("[reconcile]\ninterval_secs = 0", "reconcile.interval_secs"),
            ("[reconcile]\nsettle_secs = 7200", "reconcile.settle_secs"),
            (
                "[http]\nshutdown_timeout_secs = 9223372036854775807",
                "http.shutdown_timeout_secs",
            ),
            ("[push]\nmax_skew_secs = 0", "push.max_skew_secs"),
            (
                "[push]\ndedup_capacity = 9223372036854775807",
                "push.dedup_capacity",
            ),
            (
                "[weibo]\nrate_limit_per_sec = 4294967295",
                "weibo.rate_limit_per_sec",
            ),
            ("[weibo]\ntimeout_ms = 0", "weibo.timeout_ms"),
            ("[worker]\ntoken_wait_ms = 0", "worker.token_wait_ms"),
        ] {
            let why = refused(toml);
            assert!(
                why.starts_with(&format!("invalid configuration: {key}: must be ")),
                "{toml}: {why}"
            );
            assert_eq!(why.lines().count(), 1, "{why}");
        }
        assert_eq!(
            refused("[worker]\nconcurrency = 0"),
            "invalid configuration: worker.concurrency: must be 1 to 4096 (got 0): 0 would start no command and hold the fetched ones forever"
        );
    }

    #[test]
    fn each_range_ends_where_it_still_works() {
        accepted(&format!(
            "[weibo]\nretry_base_ms = {MAX_RETRY_MS}\nretry_max_ms = {MAX_RETRY_MS}"
        ));
        let why = refused(&format!("[weibo]\nretry_max_ms = {}", MAX_RETRY_MS + 1));
        assert!(why.contains("must be 1 to 315273600000"), "{why}");
        accepted("[http]\nworkers = 512");
        accepted("[worker]\nconcurrency = 4096\nprefetch = 65535");
        accepted("[push]\nmax_skew_secs = 4000000000\ndedup_capacity = 0");
        accepted("[http]\nshutdown_timeout_secs = 0");
        accepted("[reconcile]\nsettle_secs = 0\nlookback_secs = 1");
    }

    #[test]
    fn a_sweep_window_longer_than_the_event_log_is_refused_unless_reconciliation_is_off() {
        // 7 days of log, 10 minutes read before the window: at most 604200 s.
        accepted("[reconcile]\nlookback_secs = 604200");
        assert_eq!(
            refused("[reconcile]\nlookback_secs = 604201"),
            "invalid configuration: reconcile.lookback_secs: must be at most 604200 with event_log.max_age = \"7D\" (the log must cover the window and 600 s before it): an older state is no longer in the log, and every sweep would publish it again"
        );
        accepted("[reconcile]\nlookback_secs = 2592000\n[event_log]\nmax_age = \"31D\"");
        accepted("[reconcile]\nenabled = false\n[event_log]\nmax_age = \"1h\"");
        let why = refused("[event_log]\nmax_age = \"1h\"");
        assert!(
            why.starts_with(
                "invalid configuration: reconcile.lookback_secs: must be at most 3000 "
            ),
            "{why}"
        );
        let why = refused("[reconcile]\nlookback_secs = 31536001");
        assert!(why.contains("must be 1 to 31536000"), "{why}");
    }

    #[test]
    fn the_event_log_retention_reads_as_rabbitmq_reads_it() {
        assert_eq!(max_age("7D"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(max_age("1Y"), Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(max_age("2M"), Some(Duration::from_secs(60 * 86_400)));
        assert_eq!(max_age("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            max_age("4294967295Y"),
            Some(Duration::from_secs(4_294_967_295 * 365 * 86_400))
        );
        for bad in ["", "D", "0D", "7d", "7 D", "-1D", "4294967296Y", "7"] {
            assert_eq!(max_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn files_are_read_up_to_a_cap_whatever_they_are() {
        let why =
            super::super::read_capped(std::path::Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            why,
            "/dev/zero is larger than 1024 KiB: not a configuration or PEM file"
        );
        let why = refused("[amqp]\ntls_ca_file = \"/dev/zero\"");
        assert_eq!(why, "invalid configuration: amqp.tls_ca_file: /dev/zero is larger than 1024 KiB: not a configuration or PEM file");
        let err = Settings::load(Some(std::path::Path::new("/dev/zero")), Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: /dev/zero is larger than 1024 KiB: not a configuration or PEM file");
    }
}

#[cfg(test)]
mod documented {
    use super::RANGES;

    /// Every range is written in `defaults.toml`, in the comment over its key (or over the
    /// keys it shares a comment with), and in its row of README's configuration table.
    #[test]
    fn every_range_is_in_the_defaults_file_and_the_readme() {
        let defaults = include_str!("defaults.toml");
        let readme = include_str!("../../README.md");
        for (key, min, max, _) in RANGES {
            let range = format!("{min} to {max}");
            let (section, name) = key.split_once('.').unwrap();
            let lines: Vec<&str> = defaults.lines().collect();
            let mut in_section = false;
            let at = lines
                .iter()
                .position(|l| {
                    if l.starts_with('[') {
                        in_section = *l == format!("[{section}]");
                    }
                    in_section && l.starts_with(&format!("{name} = "))
                })
                .unwrap_or_else(|| panic!("{key} is not in defaults.toml"));
            let above: Vec<&str> = lines[..at]
                .iter()
                .rev()
                .take_while(|l| !l.is_empty() && !l.starts_with('['))
                .copied()
                .collect();
            assert!(
                above
                    .iter()
                    .any(|l| l.starts_with('#') && l.contains(&range))
                    || above.join(" ").contains(&range),
                "defaults.toml does not say {range} over {key}"
            );
            let row = readme
                .lines()
                .find(|l| {
                    l.starts_with(&format!("| `{key}`"))
                        || (l.starts_with(&format!("| `{section}."))
                            && l.contains(&format!("`{name}`")))
                })
                .unwrap_or_else(|| panic!("README has no row for {key}"));
            assert!(
                row.contains(&range),
                "README's row for {key} does not say {range}: {row}"
            );
        }
    }
}
