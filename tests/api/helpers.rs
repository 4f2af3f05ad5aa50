//! Spawning a relay against the real broker, with its own uniquely named exchange and queues.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use weibo_relay::amqp::Topology;
use weibo_relay::config::{Merchants, Settings};
use weibo_relay::signature;
use weibo_relay::startup::{Application, Roles};
use weibo_relay::tooling::sandbox::SandboxHandle;
use weibo_relay::tooling::stage;
use weibo_relay::worker::{worker_topology, RetryPolicy};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const APPID: &str = "100023";
pub const SIGN_KEY: &str = "test-sign-key-0123456789";
pub const OTHER_APPID: &str = "200046";
pub const OTHER_SIGN_KEY: &str = "other-sign-key-0123456789";

/// A running relay and what a test needs to drive and observe it.
pub struct TestApp {
    /// `http://addr` of the admin listener, when `http.admin_bind` is set.
    pub admin: Option<String>,
    pub address: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub channel: Channel,
    _connection: Connection,
    shutdown: CancellationToken,
    stopped: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _topology: TopologyGuard,
}

/// Settings with names unique to one test (`test.<run>.*`), the two test merchants, small
/// limits and quick reconnects: the harness's isolated settings, as every test starts.
pub fn test_settings(amqp_url: &str) -> Settings {
    let defaults =
        Settings::load(None, std::iter::empty::<(String, String)>()).expect("the defaults load");
    let mut s = stage::isolated(defaults, "test");
    s.http.max_body_bytes = 4096;
    s.http.body_timeout_ms = 1000;
    s.amqp.url = amqp_url.to_owned().into();
    s.amqp.confirm_timeout_ms = 2000;
    s.amqp.reconnect_min_ms = 50;
    s.amqp.reconnect_max_ms = 200;
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

/// Points `settings` at `sandbox` as the platform.
pub fn use_platform(settings: &mut Settings, sandbox: &SandboxHandle) {
    settings.weibo.api_base = sandbox.api_base();
    settings.weibo.oauth_base = sandbox.base_url();
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings(AMQP_URL), true).await
}

/// Starts the receiver; with `wait_ready`, returns once its broker link is up.
pub async fn spawn_app_with(settings: Settings, wait_ready: bool) -> TestApp {
    spawn_roles(settings, Roles::Receiver, wait_ready).await
}

/// Starts the given roles; with `wait_ready`, returns once the broker link is up.
pub async fn spawn_roles(settings: Settings, roles: Roles, wait_ready: bool) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        // Tests run no exporter: nothing to keep.
        let _ = weibo_relay::telemetry::init(false);
    }
    // First, so whatever fails below, the test's queues and exchanges are deleted.
    let topology = TopologyGuard::new(&settings);
    let app = Application::build(settings.clone(), roles)
        .await
        .expect("app builds");
    let address = format!("http://{}", app.address());
    let admin = app.admin_address().map(|a| format!("http://{a}"));
    if wait_ready {
        assert!(
            app.broker().wait_ready(Duration::from_secs(10)).await,
            "relay did not connect to RabbitMQ at {}",
            settings.amqp.redacted_url()
        );
    }
    let shutdown = app.shutdown_token();
    let stopped = Some(tokio::spawn(app.run_until_stopped()));
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .expect("test connects to RabbitMQ");
    let channel = connection.create_channel().await.expect("test channel");
    TestApp {
        address,
        admin,
        settings: settings.clone(),
        http: reqwest::Client::new(),
        channel,
        _connection: connection,
        shutdown,
        stopped,
        _topology: topology,
    }
}

impl TestApp {
    /// The test's own broker connection.
    pub fn connection(&self) -> &Connection {
        &self._connection
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

    /// Messages now in the events queue.
    pub async fn queue_depth(&self) -> u32 {
        let q = self
            .channel
            .queue_declare(
                self.settings.amqp.events_queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("events queue exists");
        q.message_count()
    }

    /// Takes the next message of the events queue, waiting up to 5 s for one.
    pub async fn next_event(&self) -> lapin::message::BasicGetMessage {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self
                .channel
                .basic_get(
                    self.settings.amqp.events_queue.as_str().into(),
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
        self.shutdown.cancel();
        if let Some(stopped) = self.stopped.take() {
            stopped.await.expect("join").expect("clean stop");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Deletes a test's queues and exchange when dropped, even when the test panicked.
pub struct TopologyGuard(Topology);

impl TopologyGuard {
    /// Everything a relay with `settings` may declare, receiver and worker alike.
    pub fn new(settings: &Settings) -> Self {
        let policy = RetryPolicy::from_settings(&settings.weibo);
        Self(
            Topology::events(&settings.amqp, &settings.event_log.max_age)
                .merge(worker_topology(&settings.amqp, &policy)),
        )
    }
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        let topology = self.0.clone();
        // A thread of its own because Drop cannot await.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await
                else {
                    return;
                };
                if let Ok(ch) = conn.create_channel().await {
                    let _ = topology.delete(&ch).await;
                }
                let _ = conn.close(200, "test done".into()).await;
            });
        });
        let _ = cleanup.join();
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
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

/// The real binary, running one role with a config file, its log lines collected.
pub struct RelayProcess {
    pub address: String,
    child: Option<std::process::Child>,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    dir: std::path::PathBuf,
}

impl RelayProcess {
    /// Starts `weibo-relay <role> --config` with JSON logs; returns once it logged its address.
    pub fn start(role: &str, toml: &str, rust_log: &str) -> Self {
        Self::start_logging(role, toml, rust_log, true)
    }

    /// Like [`start`](Self::start), with JSON or text logs; lines are read as bytes, so an
    /// invalid or escape-laden line is still seen as it was written.
    pub fn start_logging(role: &str, toml: &str, rust_log: &str, json: bool) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = std::env::temp_dir().join(format!("wr-proc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(&file, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
            .args([role, "--config"])
            .arg(&file)
            .env("WEIBO_RELAY_LOG_FORMAT", if json { "json" } else { "text" })
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                }
            });
        }
        let mut seen = Vec::new();
        let address = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "relay never logged 'listening'; it logged:\n{}",
                    seen.join("\n")
                );
            };
            seen.push(line.clone());
            if json {
                let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                if entry["message"] == "listening" {
                    break entry["address"].as_str().unwrap().to_owned();
                }
            } else if let Some(rest) = line.split(" listening address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        Self {
            address,
            child: Some(child),
            lines,
            seen,
            dir,
        }
    }

    /// What the process logged since the last call (and since it became ready).
    pub fn logged(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Every line logged so far, from the start (the lines before "listening" too).
    pub fn history(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    /// Kills the process without waiting (for clean-up in `Drop`).
    pub fn kill_now(self) {
        drop(self);
    }

    /// The process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits until `/readyz` answers 200 (broker connected, tokens held); on time-out the
    /// panic shows what the process logged.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.address);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            if Instant::now() >= deadline {
                let logged: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "relay process not ready within 10 s; it logged:\n{}",
                    logged.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a form push to the default push path; returns the status.
    pub async fn post_form(&self, body: String) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/weibo/push", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("push request completes")
            .status()
            .as_u16()
    }

    /// Sends `signal` (TERM, KILL), waits for the exit, returns it with every log line.
    pub async fn signal(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = self
            .child
            .take()
            .expect("the process was not waited for yet");
        let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let (tx, empty) = std::sync::mpsc::channel();
        drop(tx);
        let lines = std::mem::replace(&mut self.lines, empty);
        self.seen.extend(lines.iter());
        (exit, std::mem::take(&mut self.seen))
    }
}

impl Drop for RelayProcess {
    /// A test that fails half-way must not leave the process running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILLs a spawned process when dropped, unless disarmed after it was waited for: a test
/// that fails half-way leaves nothing running.
pub struct KillOnDrop(Option<u32>);

impl KillOnDrop {
    /// Guards the process `pid`.
    pub fn new(pid: u32) -> Self {
        Self(Some(pid))
    }

    /// The process was waited for: nothing to kill.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
