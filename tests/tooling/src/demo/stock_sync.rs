//! The demo's stock-sync client: another system of the merchant keeping stock in step with
//! the platform through the relay's gateway (docs/platform-gateway.md) while orders flow,
//! instead of taking a token of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weibo_relay::settings::{GatewayClient, KeyHash, Ranged};

/// The client's name in the relay's metrics and audit lines.
pub const NAME: &str = "stock-sync";
/// One call every this long: a steady trickle beside the orders, not a flood.
const EVERY: Duration = Duration::from_millis(100);

/// The demo client's configuration entry for `appid`, holding only the hash of `key`.
pub fn client(key: &str, appid: &str) -> GatewayClient {
    GatewayClient {
        merchants: false,
        name: NAME.into(),
        key_sha256: KeyHash::of(key),
        interfaces: vec!["goods/setGoodsStock*".into(), "goods/getGoodsInfo".into()],
        appids: vec![appid.into()],
        rate_limit_per_sec: const { Ranged::new(100).expect("in range") },
    }
}

/// Calls made and those not answered 200.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Gateway calls made.
    pub calls: AtomicU64,
    /// Of them, not answered 200.
    pub not_ok: AtomicU64,
}

/// A running stock-sync client.
pub struct StockSync {
    stop: CancellationToken,
    task: JoinHandle<()>,
    stats: Arc<SyncStats>,
}

impl StockSync {
    /// Sets the stock of ten SKUs in turn and reads the goods back, through `gateway_url`.
    pub fn start(gateway_url: String, key: String, appid: String) -> Self {
        let (stop, stats) = (CancellationToken::new(), Arc::new(SyncStats::default()));
        let (until, counts) = (stop.clone(), stats.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(EVERY);
            for n in 0u64.. {
                tokio::select! {
                    _ = until.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (interface, params) = if n % 2 == 0 {
                    let sku = (n / 2) % 10;
                    (
                        "goods/setGoodsStockSkuid",
                        json!({"goods_id": "demo", "sku_id": sku.to_string(), "stock": n}),
                    )
                } else {
                    ("goods/getGoodsInfo", json!({"goods_id": "demo"}))
                };
                let answer = http
                    .post(format!("{gateway_url}/v1/platform/{interface}"))
                    .bearer_auth(&key)
                    .json(&json!({"appid": appid, "params": params}))
                    .send()
                    .await;
                counts.calls.fetch_add(1, Ordering::Relaxed);
                if !answer.is_ok_and(|a| a.status().is_success()) {
                    counts.not_ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { stop, task, stats }
    }

    /// Stops after the call in flight; returns what it did.
    pub async fn stop(self) -> Arc<SyncStats> {
        self.stop.cancel();
        let _ = self.task.await;
        self.stats
    }
}
