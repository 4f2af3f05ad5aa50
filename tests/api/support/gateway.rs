//! A worker rig with the platform gateway on a port of its own and two clients: `all` (every
//! interface and appid, a high rate) and `stock` (stock and goods info for [`APPID`], 5 a
//! second).

use serde_json::Value;
use weibo_relay::settings::{GatewayClient, KeyHash, Settings};

use super::rig::WorkerRig;
use super::{Harness, APPID};

/// The key of the client that may call anything.
pub const ALL_KEY: &str = "wrg_test-key-of-the-all-client-0123456789";
/// The key of the stock client.
pub const STOCK_KEY: &str = "wrg_test-key-of-the-stock-client-012345678";

/// The two test clients.
pub fn clients() -> Vec<GatewayClient> {
    let client =
        |name: &str, key: &str, interfaces: &[&str], appids: &[&str], rate: u64| GatewayClient {
            merchants: false,
            name: name.into(),
            key_sha256: KeyHash::of(key),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            appids: appids.iter().map(|s| s.to_string()).collect(),
            rate_limit_per_sec: rate.try_into().unwrap(),
        };
    vec![
        client("all", ALL_KEY, &["*"], &["*"], 10_000),
        client(
            "stock",
            STOCK_KEY,
            &["goods/setGoodsStock*", "goods/getGoodsInfo"],
            &[APPID],
            5,
        ),
    ]
}

/// Settings with the gateway on a free port, the test clients and a 6 s deadline.
pub fn with_gateway(s: &mut Settings) {
    s.gateway.bind = Some("127.0.0.1:0".parse().unwrap());
    s.gateway.clients = clients();
    s.gateway.deadline_ms = 6000.try_into().unwrap();
}

/// A worker rig with the gateway.
pub async fn gateway_rig() -> GatewayRig {
    GatewayRig::on(Harness::builder().settings(with_gateway)).await
}

/// The rig and its gateway's URL.
pub struct GatewayRig {
    pub rig: WorkerRig,
    pub url: String,
    http: reqwest::Client,
}

/// One gateway answer.
#[derive(Debug)]
pub struct Called {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Called {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// Asserts the status and the `relay` object's outcome, and that the answer is what
    /// `docs/gateway-openapi.yaml` lists for its status.
    pub fn assert(&self, status: u16, outcome: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        let api = super::contract::OpenApi::load_file("gateway-openapi.yaml");
        let schema = api.answer_schema("post", "/v1/platform/{group}/{name}", status);
        super::contract::assert_matches(
            &format!("docs/gateway-openapi.yaml {status}"),
            &schema,
            &body,
        );
        assert_eq!(body["relay"]["outcome"], outcome, "{}", self.text);
        body
    }
}

impl GatewayRig {
    /// The gateway on `harness` (which sets [`with_gateway`]).
    pub async fn on(harness: Harness) -> Self {
        let rig = harness.rig().await;
        let url = rig.app.gateway.clone().expect("the gateway runs");
        Self {
            rig,
            url,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// `POST /v1/platform/<interface>` with `key` and a JSON body.
    pub async fn call(&self, key: &str, interface: &str, body: Value) -> Called {
        let request = self
            .http
            .post(format!("{}/v1/platform/{interface}", self.url))
            .bearer_auth(key)
            .json(&body);
        self.send(request).await
    }

    /// A request of the test's own making to `path` of the gateway.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// Sends `request` and reads the answer, asserting no token is in it.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Called {
        let response = request.send().await.expect("the gateway answers");
        let called = Called {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("a body"),
        };
        self.assert_no_token(&format!("{:?}\n{}", called.headers, called.text));
        called
    }

    /// Fails when any access_token the platform issued is in `text`.
    pub fn assert_no_token(&self, text: &str) {
        for token in self.rig.sandbox.tokens() {
            assert!(!text.contains(&token), "an access_token leaked: {text}");
        }
    }

    /// Calls of `name` (the interface without its group) the platform received.
    pub fn received(&self, name: &str) -> u64 {
        self.rig.sandbox.received(name)
    }
}

/// Sends `request` as written to `url`'s host and returns the answer's text (up to its end
/// or 10 s): for paths and bodies no HTTP client would send.
pub async fn raw_http(url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // One answer is enough: its head and a JSON body.
                let text = String::from_utf8_lossy(&answer);
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
