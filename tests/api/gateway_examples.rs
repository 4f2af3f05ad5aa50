//! The gateway clients of `examples/` (Python, standard library; Node, built-in fetch) run as
//! a person runs them, against a gateway whose first write times out: each reads back before
//! repeating it, and every stock ends as it set it.

use std::process::Command;

use serde_json::json;

use crate::support::example::repo;
use crate::support::gateway::*;
use crate::support::*;

async fn run_client(program: &str, script: &str) {
    let gw = gateway_rig().await;
    gw.rig.faults(json!({"hang_next": 1})).await;
    let (url, script) = (gw.url.clone(), repo().join(script));
    let program = program.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_KEY", ALL_KEY)
            .env("APPID", APPID)
            .output()
            .expect("the interpreter starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("summary: set=3 not_done=0 read_back=1 stocks=sku-1:10,sku-2:20,sku-3:30"),
        "{stdout}"
    );
    // The timed-out write was sent once, read back, and sent again: four in all.
    assert_eq!(gw.received("setGoodsStockSkuid"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_gateway_client_reads_back_a_timed_out_write_before_repeating_it() {
    run_client("python3", "examples/python/gateway_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_gateway_client_reads_back_a_timed_out_write_before_repeating_it() {
    run_client("node", "examples/node/gateway_client.js").await;
}
