//! A sandbox plus a client configured for it, and the admin calls the tests need.

use std::time::Duration;

use serde_json::{json, Value};
use weibo_relay::ids::{AppId, SubOrderId};
use weibo_relay::settings::{Merchant, Merchants, Settings};
use weibo_relay::weibo::WeiboClient;
use weibo_relay_tooling::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use weibo_relay_tooling::stage;

pub const APPID: &str = "100023";

/// The test merchant's appid.
pub fn appid() -> AppId {
    AppId::parse(APPID).unwrap()
}

/// A sub order id as the client takes it.
pub fn sub(id: impl AsRef<str>) -> SubOrderId {
    SubOrderId::parse(id.as_ref()).unwrap()
}
pub const SIGN_KEY: &str = "sandbox sign key 0123456789";

pub struct Platform {
    pub sandbox: SandboxHandle,
    pub settings: Settings,
    pub client: WeiboClient,
    admin: reqwest::Client,
}

/// Settings whose merchant signs with `sign_key`, pointed at `oauth_base`.
pub fn settings(oauth_base: &str, sign_key: &str, timeout_ms: u64) -> Settings {
    let mut s = Settings::load(None, std::iter::empty::<(String, String)>()).unwrap();
    s.weibo.api_base = format!("{oauth_base}/2/proxy/eshop/open").parse().unwrap();
    s.weibo.oauth_base = oauth_base.parse().unwrap();
    s.weibo.timeout_ms = timeout_ms.try_into().unwrap();
    s.merchants = Merchants::new(vec![stage::merchant(
        APPID,
        sign_key,
        "772915",
        "sandbox client secret",
        "1404376560",
    )]);
    s
}

impl Platform {
    /// A sandbox with tokens living `token_ttl` and a client with a 1 s time-out.
    pub async fn start(token_ttl: Duration) -> Self {
        let placeholder = settings("http://127.0.0.1:9", SIGN_KEY, 1000);
        let mut config = SandboxConfig::new(placeholder.merchants.clone());
        config.token_ttl = token_ttl;
        let sandbox = Sandbox::start(config).unwrap();
        let settings = settings(&sandbox.base_url(), SIGN_KEY, 1000);
        let client = WeiboClient::new(&settings.weibo).unwrap();
        Self {
            sandbox,
            settings,
            client,
            admin: reqwest::Client::new(),
        }
    }

    pub fn merchant(&self) -> &Merchant {
        self.settings.merchants.get(APPID).unwrap()
    }

    async fn admin_get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.sandbox.base_url());
        let response = self.admin.get(url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.sandbox.base_url());
        let response = self.admin.post(url).json(&body).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Creates `count` orders in `state_code`.
    pub async fn orders(&self, count: usize, state_code: u16) -> Vec<String> {
        let answer = self
            .admin_post(
                "/admin/orders",
                json!({"appid": APPID, "count": count, "state_code": state_code}),
            )
            .await;
        serde_json::from_value(answer["sub_order_ids"].clone()).unwrap()
    }

    pub async fn state_of(&self, sub_order_id: &str) -> u64 {
        self.admin_get(&format!("/admin/orders/{APPID}/{sub_order_id}"))
            .await["state_code"]
            .as_u64()
            .unwrap()
    }

    pub async fn faults(&self, faults: Value) {
        self.admin_post("/admin/faults", faults).await;
    }

    pub async fn revoke(&self, code: i64) {
        let answer = self
            .admin_post("/admin/tokens/revoke", json!({"code": code}))
            .await;
        assert_eq!(answer["revoked"], 1);
    }

    pub async fn counters(&self) -> Value {
        self.admin_get("/admin/counters").await
    }

    pub async fn tokens_issued(&self) -> u64 {
        self.counters().await["tokens_issued"][APPID]
            .as_u64()
            .unwrap_or(0)
    }

    /// Calls of `endpoint` answered with `code`.
    pub async fn calls(&self, endpoint: &str, code: &str) -> u64 {
        self.counters().await["calls"][endpoint][code]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn requests(&self) -> Vec<Value> {
        serde_json::from_value(self.admin_get("/admin/requests").await).unwrap()
    }
}

/// Polls `check` until it holds, failing after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
