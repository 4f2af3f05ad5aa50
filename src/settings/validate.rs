//! The checks every loaded configuration passes beyond each key's own: what spans keys, so a
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

impl Settings {
    /// What spans keys: each key's own range and form were checked as it was read.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.relative_ranges()?;
        self.reconcile_window()?;
        for (key, url) in [
            ("weibo.api_base", &self.weibo.api_base),
            ("weibo.oauth_base", &self.weibo.oauth_base),
        ] {
            check_platform_url(url, self.weibo.allow_insecure_http)
                .map_err(|why| ConfigError::invalid(key, why))?;
        }
        self.weibo
            .codes
            .check()
            .map_err(|(key, why)| ConfigError::invalid(key, why))?;
        self.amqp.check_identity()?;
        self.gateway.validate()?;
        self.merchants.validate()
    }

    /// What a relay process (`serve`, `receiver`, `worker`) needs beyond what every command
    /// needs: a merchant to take pushes for and to call the platform for. `check` applies this
    /// same rule, so it fails exactly where those commands would refuse to start.
    pub fn validate_for_relay(&self) -> Result<(), ConfigError> {
        match (self.merchants.is_empty(), self.provider.is_some()) {
            (true, false) => Err(ConfigError::invalid(
                "merchants",
                "at least one [[merchants]] entry is required (or a [provider] section)",
            )),
            (false, true) => Err(ConfigError::invalid(
                "provider",
                "a deployment runs one mode: [[merchants]] (self-developed) or [provider], not both",
            )),
            _ => Ok(()),
        }
    }

    /// The numbers bounded by another key (each in its own range already).
    fn relative_ranges(&self) -> Result<(), ConfigError> {
        let (a, w, r) = (&self.amqp, &self.weibo, &self.reconcile);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        for (key, value, min, max, why) in [
            (
                "amqp.reconnect_min_ms",
                ms(a.reconnect_min_ms.get()),
                1,
                ms(a.reconnect_max_ms.get()),
                "at most amqp.reconnect_max_ms",
            ),
            (
                "weibo.retry_base_ms",
                ms(w.retry_base_ms.get()),
                1,
                ms(w.retry_max_ms.get()),
                "at most weibo.retry_max_ms",
            ),
            (
                "reconcile.settle_secs",
                r.settle_secs.get().as_secs(),
                0,
                r.lookback_secs.get().as_secs().saturating_sub(1),
                "less than reconcile.lookback_secs",
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be {min} to {max} (got {value}): {why}"),
                ));
            }
        }
        Ok(())
    }

    /// While reconciliation runs, a retention of the event log that covers the sweep's
    /// window: a state older than the log is missing from it, and every sweep would publish
    /// it again.
    fn reconcile_window(&self) -> Result<(), ConfigError> {
        let (age, retention) = (&self.event_log.max_age, self.event_log.max_age.get());
        let margin = crate::reconcile::LOG_MARGIN;
        let window = self.reconcile.lookback_secs.get().saturating_add(margin);
        if self.reconcile.enabled && window > retention {
            return Err(ConfigError::invalid(
                "reconcile.lookback_secs",
                format!(
                    "must be at most {} with event_log.max_age = {:?} (the log must cover the window and {} s before it): an older state is no longer in the log, and every sweep would publish it again",
                    retention.saturating_sub(margin).as_secs(),
                    age.as_str(),
                    margin.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

/// Where the platform client may go: HTTPS, or plain HTTP to this machine (the sandbox), or
/// plain HTTP anywhere only when `weibo.allow_insecure_http` says so. The token and the
/// signed requests travel in these calls.
fn check_platform_url(url: &url::Url, allow_insecure_http: bool) -> Result<(), String> {
    let loopback = super::amqp::is_loopback(url.host_str().ok_or("has no host")?);
    match url.scheme() {
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
