//! Faults the sandbox injects into its platform endpoints, set at run time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How the sandbox answers the errors Weibo's API gateway answers (token, rate, system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ErrorEnvelope {
    /// Our model: `{"code":N,"msg":..}` like every other answer.
    Ecommerce,
    /// As the real gateway does: `{"request":..,"error_code":"N","error":..}` at HTTP 400/403,
    /// the code as a string.
    Weibo,
}

/// The fault settings; `POST /admin/faults` replaces them whole (absent fields: defaults),
/// except an absent `error_envelope`, which is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every platform call before it is answered.
    pub latency_ms: u64,
    /// Probability (0 to 1) that an order call answers `error_status`.
    pub error_rate: f64,
    /// The next N order calls answer `error_status`.
    pub fail_next: u32,
    /// The next N token requests answer `error_status`.
    pub token_fail_next: u32,
    /// HTTP status of injected failures (5xx).
    pub error_status: u16,
    /// The next N order calls answer `rate_limit_code`.
    pub rate_limit_next: u32,
    /// Order calls per second beyond which calls answer `rate_limit_code`.
    pub rate_limit_per_sec: Option<u32>,
    /// 10022, 10023 or 10024.
    pub rate_limit_code: i64,
    /// The next N order calls answer 10002 (service unavailable).
    pub system_error_next: u32,
    /// The next N order calls answer `code`.
    pub code_next: u32,
    /// The code `code_next` answers with (any code but 0).
    pub code: i64,
    /// The next N calls are received and never answered (a caller's time-out ends them).
    pub hang_next: u32,
    /// The next N calls are answered with a redirect elsewhere.
    pub redirect_next: u32,
    /// The envelope of token, rate and system errors.
    pub error_envelope: ErrorEnvelope,
    /// `retailerGetSubList` pages hold at most this many rows, whatever is asked.
    pub list_page_cap: Option<u32>,
    /// `retailerGetSubList` answers these made-up rows instead of the orders.
    pub list_junk: Option<ListJunk>,
}

/// Rows a hostile or broken platform could list: ids of any length and content, states that
/// are no routing-key word, one page over and over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListJunk {
    /// Rows on each page.
    pub rows: u32,
    /// The `total` every answer claims.
    pub total: u64,
    /// Each row's `sub_order_id`: this text, then `-<page>-<row>` (unless
    /// `same_every_page`), then `9`s up to `id_bytes` bytes.
    pub id: String,
    /// The length ids are padded to (no padding when shorter than the id).
    #[serde(default)]
    pub id_bytes: usize,
    /// Each row's `state_code`.
    pub state_code: serde_json::Value,
    /// Every page holds page 1's rows, whatever page is asked for.
    #[serde(default)]
    pub same_every_page: bool,
}

impl ListJunk {
    /// The rows of `page`.
    pub fn page(&self, page: usize) -> Vec<serde_json::Value> {
        (0..self.rows)
            .map(|row| {
                let mut id = self.id.clone();
                if !self.same_every_page {
                    id.push_str(&format!("-{page}-{row}"));
                }
                let pad = self.id_bytes.saturating_sub(id.len());
                id.extend(std::iter::repeat_n('9', pad));
                serde_json::json!({"sub_order_id": id, "state_code": self.state_code, "update_time": "2026-01-01 00:00:00"})
            })
            .collect()
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            fail_next: 0,
            token_fail_next: 0,
            error_status: 503,
            rate_limit_next: 0,
            rate_limit_per_sec: None,
            rate_limit_code: 10023,
            system_error_next: 0,
            code_next: 0,
            code: 40002,
            hang_next: 0,
            redirect_next: 0,
            error_envelope: ErrorEnvelope::Ecommerce,
            list_page_cap: None,
            list_junk: None,
        }
    }
}

/// Weibo's "service unavailable".
pub const SERVICE_UNAVAILABLE: i64 = 10002;

/// What a fault does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer this HTTP status with a non-JSON body.
    ServerError(u16),
    /// Answer this code instead of processing the call.
    Code(i64),
    /// Never answer.
    Hang,
    /// Answer a redirect to another host.
    Redirect,
}

/// The faults plus the counting they need.
#[derive(Debug, Default)]
pub struct FaultState {
    /// Current settings.
    pub faults: Faults,
    window: Option<(Instant, u32)>,
}

impl FaultState {
    /// Faults from the start.
    pub fn new(faults: Faults) -> Self {
        Self {
            faults,
            window: None,
        }
    }

    /// Added latency.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.faults.latency_ms)
    }

    /// Decides the fate of one order call (consuming one-shot faults).
    pub fn order_call(&mut self, now: Instant, roll: f64) -> Option<Injected> {
        let f = &mut self.faults;
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Some(Injected::ServerError(f.error_status));
        }
        if roll < f.error_rate {
            return Some(Injected::ServerError(f.error_status));
        }
        if f.hang_next > 0 {
            f.hang_next -= 1;
            return Some(Injected::Hang);
        }
        if f.redirect_next > 0 {
            f.redirect_next -= 1;
            return Some(Injected::Redirect);
        }
        if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            return Some(Injected::Code(f.rate_limit_code));
        }
        if f.system_error_next > 0 {
            f.system_error_next -= 1;
            return Some(Injected::Code(SERVICE_UNAVAILABLE));
        }
        if f.code_next > 0 {
            f.code_next -= 1;
            return Some(Injected::Code(f.code));
        }
        let limit = f.rate_limit_per_sec?;
        let (start, count) = match self.window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, count + 1)
            }
            _ => (now, 1),
        };
        self.window = Some((start, count));
        (count > limit).then_some(Injected::Code(self.faults.rate_limit_code))
    }

    /// Decides the fate of one token request.
    pub fn token_call(&mut self) -> Option<Injected> {
        let f = &mut self.faults;
        (f.token_fail_next > 0).then(|| {
            f.token_fail_next -= 1;
            Injected::ServerError(f.error_status)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_and_windowed_faults() {
        let mut s = FaultState::new(Faults {
            fail_next: 1,
            rate_limit_next: 1,
            rate_limit_per_sec: Some(2),
            ..Faults::default()
        });
        let t = Instant::now();
        assert_eq!(s.order_call(t, 0.5), Some(Injected::ServerError(503)));
        assert_eq!(s.order_call(t, 0.5), Some(Injected::Code(10023)));
        assert_eq!(s.order_call(t, 0.5), None);
        assert_eq!(s.order_call(t, 0.5), None);
        assert_eq!(s.order_call(t, 0.5), Some(Injected::Code(10023)));
        assert_eq!(s.order_call(t + Duration::from_secs(1), 0.5), None);
        s.faults.error_rate = 0.6;
        assert_eq!(s.order_call(t, 0.5), Some(Injected::ServerError(503)));
    }
}
