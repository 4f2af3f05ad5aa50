//! `bench gateway`: calls of one read interface through a running relay's platform gateway,
//! over keep-alive connections; with `--relay-pid`, the relay's CPU per call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::push::{cpu_secs, cpu_us_per};
use super::{drive, BenchError, Load, Report};

/// Longest a call may take before it counts as `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How `bench gateway` runs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The gateway's base URL, such as http://127.0.0.1:8090.
    pub url: String,
    /// A client key the gateway knows.
    pub key: String,
    /// The merchant to call for.
    pub appid: String,
    /// The interface called, a read (`goods/getGoodsInfo` by default).
    pub interface: String,
    /// Calls in flight, how many, the time bound.
    pub load: Load,
    /// The relay's process id (same machine): its CPU per call.
    pub relay_pid: Option<u32>,
}

/// Sends the calls and reports answers by HTTP status.
pub async fn run(options: GatewayOptions) -> Result<Report, BenchError> {
    options.load.validate()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.load.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let cpu_before = options.relay_pid.map(cpu_secs).transpose()?;
    let url = Arc::new(format!(
        "{}/v1/platform/{}",
        options.url.trim_end_matches('/'),
        options.interface
    ));
    let (key, appid) = (
        Arc::new(options.key.clone()),
        Arc::new(options.appid.clone()),
    );
    let (samples, elapsed) = drive(options.load, REQUEST_TIMEOUT, move |seq| {
        let (http, url, key, appid) = (http.clone(), url.clone(), key.clone(), appid.clone());
        async move {
            let body = json!({"appid": appid.as_str(), "params": {"goods_id": seq.to_string()}});
            let answer = http
                .post(url.as_str())
                .bearer_auth(key.as_str())
                .json(&body)
                .send()
                .await;
            super::answer_label(answer).await
        }
    })
    .await;
    let mut report = Report::new(
        "gateway",
        options.load.concurrency,
        options.load.events,
        samples,
        elapsed,
    );
    if let (Some(pid), Some(before)) = (options.relay_pid, cpu_before) {
        report.relay_cpu_us_per_call = Some(cpu_us_per(pid, before, report.completed)?);
    }
    Ok(report)
}
