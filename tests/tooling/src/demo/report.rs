//! Progress while the demo runs, and its closing summary.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::ConsumerStats;
use crate::sandbox::{PushStats, CLOSED, FINISHED};

/// A progress bar on a terminal, a plain line every few seconds otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    last_line: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    pub(super) fn new(total: usize, bar: bool) -> Self {
        let bar = bar.then(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} orders final  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            total,
            last_line: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    pub(super) fn update(&self, done: usize, pushes_accepted: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{pushes_accepted} pushes accepted"));
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.elapsed() >= Duration::from_secs(2) {
            *last = std::time::Instant::now();
            eprintln!(
                "demo: {done}/{} orders final, {pushes_accepted} pushes accepted",
                self.total
            );
        }
    }

    pub(super) fn finish(&self, done: usize) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("demo: {done}/{} orders final", self.total),
        }
    }
}

/// The numbers a demo run ends with.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Orders created.
    pub orders: usize,
    /// Push deliveries the sandbox made (redeliveries included).
    pub pushed: u64,
    /// Pushes the relay stored.
    pub accepted: u64,
    /// Pushes the relay answered as duplicates.
    pub duplicates: u64,
    /// Order changes the platform gave up pushing.
    pub given_up: u64,
    /// Events published by reconciliation: order states no push brought within the settle
    /// time (with no outage, none).
    pub reconciled: u64,
    /// Events the sample consumer skipped because another event had brought the same state
    /// (a state reconciled although its push came): zero unless a push took longer than the
    /// settle time.
    pub repeated_states: u64,
    /// The longest time from an order change to its push's 200.
    pub slowest_push: Duration,
    /// Orders finished on the sandbox.
    pub finished: usize,
    /// Orders closed on the sandbox.
    pub closed: usize,
    /// Commands sent to a delay queue for another attempt.
    pub retried: u64,
    /// Commands dead-lettered by the worker.
    pub dead_lettered: u64,
    /// Push answer time (p50, p99).
    pub push_latency: (Duration, Duration),
    /// Event to confirmed command in the consumer (p50, p99).
    pub consumer_latency: (Duration, Duration),
    /// Order paid to final state on the platform (p50, p99).
    pub order_latency: (Duration, Duration),
    /// Calls the stock-sync client made through the gateway meanwhile.
    pub gateway_calls: u64,
    /// Of them, not answered 200.
    pub gateway_not_ok: u64,
    /// Whole run.
    pub elapsed: Duration,
    /// Stopped early by a signal.
    pub interrupted: bool,
    /// Provider mode: each merchant's orders.
    pub merchants: Vec<MerchantLine>,
    /// Provider mode: `merchant.*` events the consumer heard.
    pub merchant_events: u64,
}

/// One merchant's share of a provider-mode demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantLine {
    /// The provider's name for it.
    pub merchant_ref: String,
    /// Its Weibo uid.
    pub uid: String,
    /// Orders created for it.
    pub orders: usize,
    /// Of those, finished or closed on the platform.
    pub finals: usize,
}

impl DemoReport {
    pub(super) fn gather(
        orders: usize,
        finals: &HashMap<String, (u16, Duration)>,
        pushes: &PushStats,
        consumer: &ConsumerStats,
        metrics: &str,
        elapsed: Duration,
        interrupted: bool,
    ) -> Self {
        let count = |state| finals.values().filter(|(s, _)| *s == state).count();
        let order_times: Vec<Duration> = finals.values().map(|(_, d)| *d).collect();
        Self {
            orders,
            pushed: pushes.deliveries.load(Ordering::Relaxed),
            accepted: metric(metrics, "weibo_relay_pushes_total{outcome=\"accepted\"}"),
            duplicates: metric(metrics, "weibo_relay_pushes_total{outcome=\"duplicate\"}"),
            given_up: pushes.gave_up.load(Ordering::Relaxed),
            reconciled: metric(metrics, "weibo_relay_reconciled_events_total"),
            repeated_states: consumer.repeated_states,
            slowest_push: pushes.slowest(),
            finished: count(FINISHED),
            closed: count(CLOSED),
            retried: metric(metrics, "weibo_relay_retries_total"),
            dead_lettered: metric(metrics, "weibo_relay_dead_letters_total"),
            // The stock-sync client's, set by the demo once it stopped.
            gateway_calls: 0,
            gateway_not_ok: 0,
            push_latency: p50_p99(pushes.latencies()),
            consumer_latency: p50_p99(consumer.latencies.clone()),
            order_latency: p50_p99(order_times),
            elapsed,
            interrupted,
            merchants: Vec::new(),
            merchant_events: consumer.merchant_events,
        }
    }

    /// True when every order reached a final state.
    pub fn complete(&self) -> bool {
        self.finished + self.closed == self.orders
    }
}

/// Sums every sample of the metric whose line starts with `prefix`.
pub(super) fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

/// The `q` quantile (nearest rank) of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let done = self.finished + self.closed;
        if self.complete() {
            writeln!(
                f,
                "weibo-relay demo: {} orders in {:.1} s",
                self.orders,
                self.elapsed.as_secs_f64()
            )?;
        } else {
            // What was done of what was asked: a stopped run did not do its whole order count.
            writeln!(
                f,
                "weibo-relay demo: {done} of {} orders final after {:.1} s{}",
                self.orders,
                self.elapsed.as_secs_f64(),
                if self.interrupted {
                    " (interrupted)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(f, "  pushed         {:>6}", self.pushed)?;
        writeln!(f, "  accepted       {:>6}", self.accepted)?;
        writeln!(f, "  duplicates     {:>6}", self.duplicates)?;
        writeln!(f, "  not pushed     {:>6}", self.given_up)?;
        writeln!(f, "  reconciled     {:>6}", self.reconciled)?;
        writeln!(f, "  states twice   {:>6}", self.repeated_states)?;
        writeln!(f, "  finished       {:>6}", self.finished)?;
        writeln!(f, "  closed         {:>6}", self.closed)?;
        writeln!(f, "  retried        {:>6}", self.retried)?;
        writeln!(f, "  dead-lettered  {:>6}", self.dead_lettered)?;
        if !self.merchants.is_empty() {
            writeln!(
                f,
                "  merchants (onboarded through the consent page; {} merchant events)",
                self.merchant_events
            )?;
        }
        for m in &self.merchants {
            writeln!(
                f,
                "    {:<12} uid {:<12} {:>5} of {} orders final",
                m.merchant_ref, m.uid, m.finals, m.orders
            )?;
        }
        if self.merchants.is_empty() {
            // The stock-sync client's calls through the platform gateway, and those not 200.
            writeln!(f, "  gateway calls  {:>6}", self.gateway_calls)?;
            writeln!(f, "  gateway failed {:>6}", self.gateway_not_ok)?;
        }
        writeln!(f, "  latency (p50 / p99)")?;
        writeln!(
            f,
            "    push answered by the relay   {} / {}",
            ms(self.push_latency.0),
            ms(self.push_latency.1)
        )?;
        writeln!(
            f,
            "    event to command (consumer)  {} / {}",
            ms(self.consumer_latency.0),
            ms(self.consumer_latency.1)
        )?;
        writeln!(
            f,
            "    paid to final on platform    {} / {}",
            ms(self.order_latency.0),
            ms(self.order_latency.1)
        )?;
        writeln!(
            f,
            "    slowest push after its change {} (reconciliation leaves {} s to pushes)",
            ms(self.slowest_push),
            super::SETTLE.as_secs()
        )?;
        let verdict = if self.interrupted {
            format!(
                "interrupted with {} of {} orders final; queues deleted",
                self.finished + self.closed,
                self.orders
            )
        } else if self.complete() {
            "every order reached a final state".to_owned()
        } else {
            format!(
                "{} orders did NOT reach a final state",
                self.orders - self.finished - self.closed
            )
        };
        write!(f, "  result: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    fn report(orders: usize, finished: usize, interrupted: bool) -> DemoReport {
        let zero = (Duration::ZERO, Duration::ZERO);
        DemoReport {
            orders,
            pushed: 0,
            accepted: 0,
            duplicates: 0,
            given_up: 0,
            reconciled: 0,
            repeated_states: 0,
            slowest_push: Duration::ZERO,
            finished,
            closed: 0,
            retried: 0,
            dead_lettered: 0,
            gateway_calls: 0,
            gateway_not_ok: 0,
            push_latency: zero,
            consumer_latency: zero,
            order_latency: zero,
            elapsed: Duration::from_millis(5900),
            interrupted,
            merchants: Vec::new(),
            merchant_events: 0,
        }
    }

    #[test]
    fn the_first_line_says_what_was_done_of_what_was_asked() {
        let first = |r: DemoReport| r.to_string().lines().next().unwrap().to_owned();
        assert_eq!(
            first(report(20_000, 836, true)),
            "weibo-relay demo: 836 of 20000 orders final after 5.9 s (interrupted)"
        );
        assert_eq!(
            first(report(200, 180, false)),
            "weibo-relay demo: 180 of 200 orders final after 5.9 s"
        );
        assert_eq!(
            first(report(200, 200, false)),
            "weibo-relay demo: 200 orders in 5.9 s"
        );
    }

    #[test]
    fn metric_sums_labelled_series() {
        let text = "a{x=\"1\"} 2\na{x=\"2\"} 3\nab 7\n";
        assert_eq!(metric(text, "a{"), 5);
    }
}
