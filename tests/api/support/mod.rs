//! What the tests share: the test merchants and their settings, [`Harness`] (the one way to
//! start what a test runs, on `weibo_relay_tooling::stage`), a relay's view with the test's
//! own broker connection, and push helpers; what only a few subjects share, in modules.

pub mod contract;
pub mod deployment;
pub mod example;
pub mod gateway;
mod harness;
pub mod log_entry;
pub mod proxy;
pub mod rig;

use std::time::{Duration, Instant};
use weibo_relay::settings::AmqpUrl;

use lapin::options::BasicGetOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use weibo_relay::settings::{Merchants, Settings};
use weibo_relay::signature;
use weibo_relay_tooling::stage;

pub use harness::Harness;
pub use weibo_relay_tooling::stage::{
    tap_queue, ConfigFile, KillOnDrop, RelayProcess, Stage, Teardown,
};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const APPID: &str = "100023";
pub const SIGN_KEY: &str = "test-sign-key-0123456789";
pub const OTHER_APPID: &str = "200046";
pub const OTHER_SIGN_KEY: &str = "other-sign-key-0123456789";
/// The relay binary under test, for relays run as processes: the one that ships.
pub const BIN: &str = env!("CARGO_BIN_EXE_weibo-relay");

/// The tooling's binary (`sandbox`, `demo`, `bench`), which `cargo test` builds beside this
/// test's own (the tooling package's own test needs it).
///
/// # Panics
/// When it was not built (`cargo test --test api` alone does not build other packages).
pub fn tooling_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join("weibo-relay-tooling");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds it; after `cargo test --test api` alone, run `cargo build -p weibo-relay-tooling` first",
        bin.display()
    );
    bin
}

/// A relay in this process on a stage of its own, and what a test needs to drive and
/// observe it; dropping it stops the relay and deletes the stage's queues.
pub struct TestApp {
    /// `http://addr` of the admin listener, when `http.admin_bind` is set.
    pub admin: Option<String>,
    /// `http://addr` of the platform gateway, when `gateway.bind` is set.
    pub gateway: Option<String>,
    pub address: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub channel: Channel,
    connection: Connection,
    stage: Stage,
}

/// Settings with names unique to one test (`test.<run>.*`), the two test merchants, small
/// limits and quick reconnects: the harness's isolated settings, as every test starts.
pub fn test_settings(amqp_url: &str) -> Settings {
    let defaults =
        Settings::load(None, std::iter::empty::<(String, String)>()).expect("the defaults load");
    let mut s = stage::isolated(defaults, "test");
    s.http.max_body_bytes = 4096.try_into().unwrap();
    s.http.body_timeout_ms = 1000.try_into().unwrap();
    s.amqp.url = AmqpUrl::parse(amqp_url).unwrap();
    s.amqp.confirm_timeout_ms = 2000.try_into().unwrap();
    s.amqp.reconnect_min_ms = 50.try_into().unwrap();
    s.amqp.reconnect_max_ms = 200.try_into().unwrap();
    s.merchants = Merchants::new(vec![
        stage::merchant(
            APPID,
            SIGN_KEY,
            "772915",
            "test-client-secret",
            "1404376560",
        ),
        stage::merchant(
            OTHER_APPID,
            OTHER_SIGN_KEY,
            "772916",
            "other-client-secret",
            "1404376561",
        ),
    ]);
    s
}

/// `settings` as the configuration file of a relay process.
pub fn relay_toml(settings: &Settings) -> String {
    stage::to_toml(settings)
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB;
/// `None` once the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

/// Deletes `queues` (a test's own, besides its stage's) when dropped, also after a panic.
#[must_use = "the queues are deleted when this is dropped"]
pub fn queues_deleted_after(queues: &[&str]) -> Teardown {
    let topology = queues
        .iter()
        .fold(weibo_relay::amqp::Topology::default(), |t, q| {
            t.queue(weibo_relay::amqp::QueueSpec::classic(q))
        });
    Teardown::of(topology, test_settings(AMQP_URL).amqp)
}

impl TestApp {
    /// The test's view of `stage`'s in-process relay, with a broker connection of its own.
    async fn on(stage: Stage) -> Self {
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("test connects to RabbitMQ");
        let channel = connection.create_channel().await.expect("test channel");
        TestApp {
            address: stage.relay_url().to_owned(),
            admin: stage.admin_url().map(str::to_owned),
            gateway: stage.gateway_url().map(str::to_owned),
            settings: stage.settings().clone(),
            http: reqwest::Client::new(),
            channel,
            connection,
            stage,
        }
    }

    /// The test's own broker connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn push_url(&self) -> String {
        format!("{}{}", self.address, self.settings.push.path)
    }

    pub async fn post_push(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .http
            .post(self.push_url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("push request completes");
        Answer::read(response).await
    }

    pub async fn post_form(&self, body: String) -> Answer {
        self.post_push("application/x-www-form-urlencoded; charset=utf-8", body)
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request completes");
        Answer::read(response).await
    }

    /// Messages now in the stage's tap (every order event the relay published).
    pub async fn queue_depth(&self) -> u32 {
        self.depth_of(&tap_queue(&self.settings)).await
    }

    /// Messages now in `queue`, which must exist.
    pub async fn depth_of(&self, queue: &str) -> u32 {
        weibo_relay::amqp::topology::queue_depth(&self.connection, queue)
            .await
            .expect("the broker answers")
            .unwrap_or_else(|| panic!("queue {queue} exists"))
    }

    /// Takes the next message of the stage's tap, waiting up to 5 s for one.
    pub async fn next_event(&self) -> lapin::message::BasicGetMessage {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self
                .channel
                .basic_get(
                    tap_queue(&self.settings).as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic_get");
            if let Some(message) = got {
                return message;
            }
            assert!(Instant::now() < deadline, "no event reached the queue");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the relay the way SIGTERM does and waits for it.
    pub async fn stop(&mut self) {
        self.stage.stop_relay().await.expect("clean stop");
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        Self { status, body }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts the exact status and the contract's `{"code","msg"}` shape.
    pub fn assert_refused(&self, status: u16, code: i64) {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.body);
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
    }

    pub fn assert_success(&self) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(
            self.json(),
            serde_json::json!({"code": 0, "msg": "success"})
        );
    }
}

pub fn now() -> i64 {
    weibo_relay::clock::unix_secs() as i64
}

/// The fields of a push for `data`, signed with `key` at `timestamp`.
pub fn signed_fields(
    appid: &str,
    key: &str,
    type_: &str,
    data: &str,
    timestamp: i64,
) -> Vec<(String, String)> {
    let mut fields = vec![
        ("appid".to_owned(), appid.to_owned()),
        ("type".to_owned(), type_.to_owned()),
        ("data".to_owned(), data.to_owned()),
        ("timestamp".to_owned(), timestamp.to_string()),
        (
            "nonce".to_owned(),
            uuid::Uuid::new_v4().simple().to_string(),
        ),
        ("sign_type".to_owned(), "md5".to_owned()),
    ];
    let sign = signature::sign(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), key);
    fields.push(("sign".to_owned(), sign));
    fields
}

pub fn form(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A sub-order event's data, unique per call unless `sub_order_id` repeats.
pub fn order_data(sub_order_id: &str, state_code: i64) -> String {
    format!(
        r#"{{"recharge_account_type":"1","recharge_account":"13812345678","sub_order_id":"{sub_order_id}","state_code":{state_code},"addtime":"2022-07-21 12:15:02","pay_time":"2022-07-21 12:15:09","buyer_id":"1766","sku_list":[{{"goods_id":"1083814100038","sku_id":"3924","state_code":502,"sold_state_code":601,"pin":""}}],"buyer":{{"weibo_uid":"6748678500"}},"contact_phone":"13912345678"}}"#
    )
}

pub fn unique_order_id() -> String {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000).to_string()
}

/// A correctly signed form push for a fresh order.
pub fn valid_form_push() -> (String, String) {
    let id = unique_order_id();
    let fields = signed_fields(APPID, SIGN_KEY, "2", &order_data(&id, 201), now());
    (form(&fields), id)
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
