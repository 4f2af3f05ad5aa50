//! Provider mode in the shipped binary: `serve` with `[provider]` serves the connect pages on
//! its public listener, publishes merchant events from the store, counts merchants by status,
//! and `weibo-relay merchants ...` creates links, lists, shows and revokes.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use weibo_relay::provider::settings::{Provider, ProviderSettings};
use weibo_relay::settings::{Merchants, Settings};
use weibo_relay_tooling::sandbox::{OAuth2App, Sandbox, SandboxConfig, SandboxHandle};
use weibo_relay_tooling::stage::{self, ConfigFile, NeverListened, RelayProcess, Stage};

use crate::support::{fresh_keys, location, query_of, TestDb, CLIENT_ID, CLIENT_SECRET};
use crate::tap::next_event;

const RELAY: &str = env!("CARGO_BIN_EXE_weibo-relay");
pub(crate) const UID: &str = "1404376560";

/// A relay process in provider mode on a stage of its own, its store and the sandbox.
pub(crate) struct ProviderRelay {
    stage: Stage,
    pub(crate) sandbox: SandboxHandle,
    _db: TestDb,
    relay: RelayProcess,
    config: ConfigFile,
    pub(crate) settings: Settings,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

pub(crate) fn provider_settings(base: &str, db: &TestDb) -> ProviderSettings {
    ProviderSettings {
        appid: "100023".into(),
        sign_key: SecretString::from("provider-sign-key-0123"),
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        redirect_uri: format!("{base}/connect/callback"),
        public_base: base.into(),
        return_url_origins: vec![],
        link_ttl_secs: 1800,
        store_url: SecretString::from(db.url.clone()),
        store_keys: fresh_keys(&["k1"]),
        push_merchant_field: "uid".into(),
        name: Some("Acme Fulfilment".into()),
    }
}

impl ProviderRelay {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`ProviderRelay::start`], with the relay's settings adjusted first. The public port
    /// is chosen before the relay binds it (its URLs name it); one taken in the meantime, by
    /// another test's outgoing connection say, means a fresh start on another port.
    pub(crate) async fn start_with(adjust: impl Fn(&mut Settings)) -> Self {
        let mut tries = 0;
        loop {
            match Self::try_start_with(&adjust).await {
                Ok(relay) => return relay,
                Err(failed) if failed.address_in_use() && tries < 3 => tries += 1,
                Err(failed) => panic!(
                    "the provider relay never listened; it logged:\n{}",
                    failed.logged.join("\n")
                ),
            }
        }
    }

    async fn try_start_with(adjust: &impl Fn(&mut Settings)) -> Result<Self, NeverListened> {
        let db = TestDb::new().await;
        let port = stage::spare_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut app = OAuth2App::new(
            CLIENT_ID,
            CLIENT_SECRET,
            &format!("{base}/connect/callback"),
        );
        app.cancel_url = Some(format!("{base}/connect/cancelled"));
        let provider =
            Provider::try_from(provider_settings(&base, &db)).expect("the provider settings parse");
        // The platform knows the provider's appid and key: it signs calls as it signs pushes.
        let mut sandbox_config = SandboxConfig::new(provider.config().as_push_signer());
        sandbox_config.oauth2 = Some(app);
        let sandbox = Sandbox::start(sandbox_config).expect("the sandbox starts");
        let defaults = Settings::load(None, std::iter::empty::<(String, String)>())
            .expect("the defaults load");
        let mut settings = stage::isolated(defaults, "test");
        settings.http.bind = ([127, 0, 0, 1], port).into();
        settings.weibo.api_base = url::Url::parse(&sandbox.api_base()).expect("a URL");
        settings.weibo.oauth_base = url::Url::parse(&sandbox.base_url()).expect("a URL");
        settings.provider = Some(provider);
        adjust(&mut settings);
        let stage = Stage::builder(settings.clone())
            .start()
            .await
            .expect("the stage starts");
        let toml = stage::to_toml(&settings);
        let relay = RelayProcess::try_start(RELAY, "serve", &toml, "info")?;
        Ok(Self {
            stage,
            sandbox,
            _db: db,
            relay,
            config: ConfigFile::with_text(&toml).expect("a configuration file"),
            settings,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
        })
    }

    /// Where the gateway listener bound (port 0 in the settings): it logs it before
    /// "listening".
    pub(crate) fn gateway_address(&mut self) -> String {
        self.relay
            .history()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|entry| entry["gateway_address"].as_str().map(str::to_owned))
            .expect("the relay logged its gateway's address")
    }

    /// What the relay process logged since the last call.
    pub(crate) fn logged(&self) -> Vec<String> {
        self.relay.logged()
    }

    /// `weibo-relay merchants <args>` on the relay's configuration.
    pub(crate) fn merchants(&self, args: &[&str]) -> Output {
        Command::new(RELAY)
            .arg("merchants")
            .args(args)
            .arg("--config")
            .arg(self.config.path())
            .output()
            .expect("the binary runs")
    }

    /// Link page, button, Weibo's consent page (Authorize as `uid`), callback: the callback's
    /// status.
    pub(crate) async fn consent(&self, link: &str, uid: &str) -> u16 {
        let page = self.http.get(link).send().await.expect("the link page");
        assert_eq!(page.status(), 200, "the link page");
        let pressed = self.http.post(link).send().await.expect("the button");
        assert_eq!(pressed.status(), 303, "the button redirects to Weibo");
        let state = query_of(&location(&pressed))
            .get("state")
            .cloned()
            .expect("a state in the authorize URL");
        let decided = self
            .http
            .post(format!("{}/oauth2/authorize", self.sandbox.base_url()))
            .form(&[
                ("client_id", CLIENT_ID),
                ("redirect_uri", &format!("{}/connect/callback", self.base)),
                ("response_type", "code"),
                ("state", &state),
                ("uid", uid),
                ("decision", "authorize"),
            ])
            .send()
            .await
            .expect("the decision");
        assert_eq!(decided.status(), 302, "Weibo redirects back");
        let callback = self
            .http
            .get(location(&decided))
            .send()
            .await
            .expect("the callback");
        callback.status().as_u16()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("a body")
    }

    pub(crate) async fn stop(self) {
        let (status, _) = self.relay.signal("TERM").await;
        assert!(status.success(), "the relay stops cleanly: {status:?}");
        self.stage.stop().await;
    }
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn serve_in_provider_mode_onboards_announces_lists_and_revokes_through_the_cli() {
    let relay = ProviderRelay::start().await;
    let linked = relay.merchants(&["link", "--ref", "shop-1"]);
    assert!(linked.status.success(), "{}", stderr(&linked));
    let link = stdout(&linked).trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/connect/", relay.base)),
        "{link}"
    );
    assert_eq!(relay.consent(&link, UID).await, 200, "the result page");

    let (key, merchant, body) = next_event(&relay.settings).await;
    assert_eq!(key, "merchant.authorized");
    assert_eq!(merchant, "shop-1");
    assert_eq!(body["merchant_ref"], "shop-1");
    assert_eq!(body["uid"], UID);
    assert_eq!(body["status"], "authorized");

    let listed = relay.merchants(&["list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let lines: Vec<serde_json::Value> = stdout(&listed)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "one merchant");
    assert_eq!(lines[0]["merchant_ref"], "shop-1");
    assert_eq!(lines[0]["status"], "authorized");
    assert_eq!(lines[0]["uid"], UID);
    assert!(lines[0]["access_expires_at"].is_string());
    let shown = relay.merchants(&["show", "shop-1"]);
    assert!(
        stdout(&shown).starts_with(&format!("shop-1 status=authorized uid={UID} ")),
        "{}",
        stdout(&shown)
    );

    let revoked = relay.merchants(&["revoke", "shop-1"]);
    assert_eq!(stdout(&revoked).trim(), "revoked shop-1: tokens deleted");
    assert_eq!(relay.sandbox.oauth2().counters().revoke_calls, 1);
    let (key, merchant, body) = next_event(&relay.settings).await;
    assert_eq!(
        (key.as_str(), merchant.as_str()),
        ("merchant.revoked", "shop-1")
    );
    assert_eq!(body["status"], "revoked");
    let again = relay.merchants(&["revoke", "shop-1"]);
    assert_eq!(
        stdout(&again).trim(),
        "shop-1 is revoked: no authorization to revoke"
    );

    // Counted by the housekeeping task within its 15 s round.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let metrics = relay.metrics().await;
        if metrics.contains("weibo_relay_provider_merchants{status=\"revoked\"} 1")
            && metrics.contains("weibo_relay_provider_events_published_total 2")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn hostile_refs_and_a_configuration_without_provider_get_one_line_and_exit_2() {
    let relay = ProviderRelay::start().await;
    let hostile = relay.merchants(&["show", "shop\x1b[2J\nfake line"]);
    assert_eq!(hostile.status.code(), Some(2));
    let said = stderr(&hostile);
    assert!(said.contains("is not a merchant_ref"), "{said}");
    assert!(
        !said.contains('\x1b'),
        "an escape reached the terminal: {said:?}"
    );
    let unknown = relay.merchants(&["show", "nobody"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no merchant nobody"),
        "{}",
        stderr(&unknown)
    );
    let outside = relay.merchants(&[
        "link",
        "--ref",
        "shop-2",
        "--return-url",
        "https://evil.example/",
    ]);
    assert_eq!(outside.status.code(), Some(2), "{}", stdout(&outside));
    assert!(
        stdout(&outside).is_empty(),
        "no link for a refused return URL"
    );

    let mut plain = relay.settings.clone();
    plain.provider = None;
    plain.merchants = Merchants::new(vec![stage::merchant(
        "100023",
        "test-sign-key-0123456",
        CLIENT_ID,
        "test-client-secret",
        UID,
    )]);
    let file = ConfigFile::of(&plain).expect("a configuration file");
    let listed = Command::new(RELAY)
        .args(["merchants", "list", "--config"])
        .arg(file.path())
        .output()
        .expect("the binary runs");
    assert_eq!(listed.status.code(), Some(2));
    assert!(
        stderr(&listed).contains("no [provider] section"),
        "{}",
        stderr(&listed)
    );

    let mut both = relay.settings.clone();
    both.merchants = plain.merchants.clone();
    let file = ConfigFile::of(&both).expect("a configuration file");
    let served = Command::new(RELAY)
        .args(["serve", "--config"])
        .arg(file.path())
        .output()
        .expect("the binary runs");
    assert_eq!(served.status.code(), Some(2));
    assert!(
        stderr(&served).contains("provider: a deployment runs one mode"),
        "{}",
        stderr(&served)
    );
    relay.stop().await;
}
