//! `weibo-relay-tooling bench gateway` against the shipped binary's gateway, the platform's
//! rate limit as high as it goes (5000 a second): every call answered 200, and the relay's
//! CPU per call reported (printed with --nocapture: the BENCHMARKS.md figure).

use std::process::Command;

use serde_json::Value;

use crate::support::gateway::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_gateway_reports_calls_per_second_and_the_relays_cpu_per_call() {
    let events: u64 = std::env::var("GATEWAY_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let stage = Harness::builder()
        .platform()
        .settings(|s| {
            with_gateway(s);
            s.weibo.rate_limit_per_sec = 5000.try_into().unwrap();
            s.reconcile.enabled = false;
        })
        .stage()
        .await;
    let mut relay = stage.spawn(
        BIN,
        "worker",
        "warn,weibo_relay::startup=info,weibo_relay::gateway=info",
    );
    relay.wait_ready().await;
    let gateway = relay
        .history()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|e| e["gateway_address"].as_str().map(str::to_owned))
        .expect("the gateway's address is logged");
    let pid = relay.pid().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(tooling_bin())
            .args(["bench", "gateway", "--url", &format!("http://{gateway}")])
            .args(["--key", ALL_KEY, "--appid", APPID, "--relay-pid", &pid])
            .args([
                "--concurrency",
                "16",
                "--events",
                &events.to_string(),
                "--json",
            ])
            .output()
            .expect("the tooling runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("bench gateway: {report}");
    assert_eq!(report["bench"], "gateway");
    assert_eq!(report["answers"]["200"], events, "{report}");
    assert!(
        report["relay_cpu_us_per_call"]
            .as_f64()
            .is_some_and(|us| us > 0.0),
        "{report}"
    );
    drop(relay);
    stage.stop().await;
}
