//! What a bench run ends with: rate, latency percentiles, answers by kind, as text or JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::demo::percentile;

/// One task's samples: the latency of every request and how each was answered.
#[derive(Debug, Default)]
pub struct Samples {
    /// Latency of every request that got an answer (of any kind).
    pub latencies: Vec<Duration>,
    /// Answers by kind: HTTP status, `ack`, `nack`, `error`, ...
    pub answers: BTreeMap<String, u64>,
}

impl Samples {
    /// Records one answered request.
    pub fn record(&mut self, latency: Duration, answer: impl Into<String>) {
        self.latencies.push(latency);
        *self.answers.entry(answer.into()).or_default() += 1;
    }

    /// Joins another task's samples into these.
    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        for (answer, n) in other.answers {
            *self.answers.entry(answer).or_default() += n;
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let ms = |q| percentile(&samples, q).as_secs_f64() * 1000.0;
        Self {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        }
    }
}

/// The queue check of `bench push --verify-queue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueCheck {
    /// The queue counted.
    pub queue: String,
    /// Messages the run added to it (count after minus count before).
    pub messages: u64,
    /// `messages - answers of 200`: 0 when every accepted push is there exactly once.
    pub difference: i64,
}

/// The worker's rate against its limit (`bench worker`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateCheck {
    /// Platform calls answered per second over the run.
    pub calls_per_sec: f64,
    /// `weibo.rate_limit_per_sec`.
    pub limit_per_sec: u32,
    /// Latency the sandbox added to every call.
    pub platform_latency_ms: u64,
}

/// The report of one bench run; `--json` prints it as one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `push`, `broker`, `worker` or `gateway`.
    pub bench: &'static str,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests asked for.
    pub events: u64,
    /// Requests that got an answer (fewer than `events` when the time bound cut the run).
    pub completed: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_secs: f64,
    /// Completed requests per second.
    pub events_per_sec: f64,
    /// Per-request latency.
    pub latency: Latency,
    /// Answers by kind.
    pub answers: BTreeMap<String, u64>,
    /// `bench push --relay-pid` only: the receiver's CPU (user + system) per answered push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_cpu_us_per_push: Option<f64>,
    /// `bench gateway --relay-pid` only: the relay's CPU (user + system) per answered call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_cpu_us_per_call: Option<f64>,
    /// `bench push --verify-queue` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueCheck>,
    /// `bench worker` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateCheck>,
}

impl Report {
    /// A report from merged samples over `elapsed`.
    pub fn new(
        bench: &'static str,
        concurrency: usize,
        events: u64,
        samples: Samples,
        elapsed: Duration,
    ) -> Self {
        let completed = samples.latencies.len() as u64;
        let secs = elapsed.as_secs_f64();
        Self {
            bench,
            concurrency,
            events,
            completed,
            elapsed_secs: secs,
            events_per_sec: if secs > 0.0 {
                completed as f64 / secs
            } else {
                0.0
            },
            latency: Latency::of(samples.latencies),
            answers: samples.answers,
            relay_cpu_us_per_push: None,
            relay_cpu_us_per_call: None,
            queue: None,
            rate: None,
        }
    }

    /// How many requests got this answer.
    pub fn answered(&self, answer: &str) -> u64 {
        self.answers.get(answer).copied().unwrap_or_default()
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench {}: {}/{} in {:.2} s at concurrency {}",
            self.bench, self.completed, self.events, self.elapsed_secs, self.concurrency
        )?;
        writeln!(f, "  rate      {:.1} /s", self.events_per_sec)?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        )?;
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        write!(f, "  answers   {}", answers.join(", "))?;
        if let Some(us) = self.relay_cpu_us_per_push {
            write!(f, "\n  relay cpu {us:.1} µs per push")?;
        }
        if let Some(us) = self.relay_cpu_us_per_call {
            write!(f, "\n  relay cpu {us:.1} µs per call")?;
        }
        if let Some(q) = &self.queue {
            write!(
                f,
                "\n  queue     {} holds {} messages (difference from 200 answers: {})",
                q.queue, q.messages, q.difference
            )?;
        }
        if let Some(r) = &self.rate {
            write!(
                f,
                "\n  worker    {:.1} calls/s against a limit of {}/s ({} ms platform latency)",
                r.calls_per_sec, r.limit_per_sec, r.platform_latency_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Samples {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.record(
                Duration::from_millis(ms),
                if ms <= 98 { "200" } else { "503" },
            );
        }
        s
    }

    #[test]
    fn report_counts_answers_and_percentiles() {
        let mut a = samples();
        let mut b = Samples::default();
        b.record(Duration::from_millis(500), "error");
        a.merge(b);
        let r = Report::new("push", 4, 101, a, Duration::from_secs(2));
        assert_eq!(r.completed, 101);
        assert_eq!((r.answered("200"), r.answered("503")), (98, 2));
        assert_eq!(r.answered("error"), 1);
        assert_eq!(r.latency.p50_ms, 51.0);
        assert_eq!(r.latency.p99_ms, 100.0);
        assert_eq!(r.latency.max_ms, 500.0);
        assert!((r.events_per_sec - 50.5).abs() < 1e-9);
    }

    #[test]
    fn json_is_one_object_with_optional_parts_left_out() {
        let r = Report::new("broker", 2, 100, samples(), Duration::from_secs(1));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["bench"], "broker");
        assert_eq!(v["answers"]["200"], 98);
        assert_eq!(v["latency"]["p90_ms"], 90.0);
        assert!(v.get("queue").is_none() && v.get("rate").is_none());
        assert!(!r.to_json().contains('\n'));
    }
}
