//! The provider tests' harness: a database of their own each (created, migrated, dropped also
//! when the test panics), the sandbox with the provider's app registered, the connect pages on
//! a port of their own, and a stand-in for the provider's back office to return to.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use weibo_relay::provider::crypto::KeyRing;
use weibo_relay::provider::oauth::HttpOAuthClient;
use weibo_relay::provider::onboarding::Onboarding;
use weibo_relay::provider::pages::{self, PagesState};
use weibo_relay::provider::refresh::{RefreshPolicy, Refresher};
use weibo_relay::provider::settings::{ProviderConfig, ProviderSettings, StoreKey};
use weibo_relay::provider::store::Store;
use weibo_relay::settings::Merchants;
use weibo_relay_tooling::sandbox::{OAuth2App, Sandbox, SandboxConfig, SandboxHandle};

pub const CLIENT_ID: &str = "772915";
pub const CLIENT_SECRET: &str = "provider-client-secret-0123";

/// The machine's PostgreSQL, trust auth on loopback (`.ci/ensure-postgres.sh`).
pub fn pg_base() -> String {
    std::env::var("WEIBO_RELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of the test's own, migrated; dropped (connections and all) when this is dropped,
/// also while a failed test unwinds.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("wr_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base()))
            .await
            .expect("PostgreSQL answers on 127.0.0.1:5432 (bash .ci/ensure-postgres.sh)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("the test database created");
        admin.close().await.ok();
        let url = format!("{}/{name}", pg_base());
        let db = Self {
            name,
            url: url.clone(),
            store: Store::connect(&SecretString::from(url), 20)
                .await
                .expect("the store connects"),
        };
        db.store.migrate().await.expect("the migrations apply");
        db
    }

    /// Another pool on the same database: what another relay process would hold.
    pub async fn another_store(&self) -> Store {
        Store::connect(&SecretString::from(self.url.clone()), 10)
            .await
            .expect("a second pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base())).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("test database {} not dropped: {dropped:?}", self.name);
        }
    }
}

/// `n` fresh keys as `(id, base64)`, newest first.
pub fn fresh_keys(ids: &[&str]) -> Vec<StoreKey> {
    ids.iter()
        .map(|id| {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            StoreKey {
                id: (*id).to_owned(),
                key: SecretString::from(base64::engine::general_purpose::STANDARD.encode(key)),
            }
        })
        .collect()
}

/// A policy quick enough for tests: short back-off, fast pacing.
pub fn quick_policy() -> RefreshPolicy {
    RefreshPolicy {
        cooldown_min: Duration::from_secs(2),
        cooldown_max: Duration::from_secs(10),
        per_second: 1000,
        concurrency: 16,
        batch: 2000,
        lock_wait: Duration::from_secs(20),
        ..RefreshPolicy::default()
    }
}

/// Everything one test of provider mode runs against.
pub struct Rig {
    pub db: TestDb,
    pub sandbox: SandboxHandle,
    pub config: ProviderConfig,
    pub settings: ProviderSettings,
    pub onboarding: Onboarding,
    pub refresher: Refresher,
    /// `http://127.0.0.1:port` of the connect pages.
    pub pages: String,
    /// `http://127.0.0.1:port` of the back office (an allowed return origin).
    pub backoffice: String,
    /// A client that follows no redirect, so each hop is seen.
    pub http: reqwest::Client,
    servers: Vec<ServerHandle>,
}

impl Rig {
    pub async fn start() -> Self {
        Self::start_with(quick_policy()).await
    }

    pub async fn start_with(policy: RefreshPolicy) -> Self {
        let db = TestDb::new().await;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the pages");
        let pages = format!("http://{}", listener.local_addr().expect("bound"));
        let (backoffice, backoffice_server) = start_backoffice();
        let mut app = OAuth2App::new(
            CLIENT_ID,
            CLIENT_SECRET,
            &format!("{pages}/connect/callback"),
        );
        app.cancel_url = Some(format!("{pages}/connect/cancelled"));
        let mut sandbox_config = SandboxConfig::new(Merchants::new(vec![]));
        sandbox_config.oauth2 = Some(app);
        let sandbox = Sandbox::start(sandbox_config).expect("the sandbox starts");
        let settings = ProviderSettings {
            appid: "100023".into(),
            sign_key: SecretString::from("provider-sign-key-0123"),
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            redirect_uri: format!("{pages}/connect/callback"),
            public_base: pages.clone(),
            return_url_origins: vec![backoffice.clone()],
            link_ttl_secs: 1800,
            store_url: SecretString::from(db.url.clone()),
            store_keys: fresh_keys(&["k1"]),
            push_merchant_field: "uid".into(),
            name: Some("Acme Fulfilment".into()),
        };
        let config = settings.parse().expect("the provider settings parse");
        let client = Arc::new(oauth_client(&sandbox, &config));
        let onboarding = Onboarding::new(
            db.store.clone(),
            client.clone(),
            config.clone(),
            &sandbox.base_url(),
            policy.clone(),
        )
        .expect("the onboarding service");
        let refresher = Refresher::new(db.store.clone(), client, config.keys.clone(), policy);
        let state = web::Data::new(PagesState::new(onboarding.clone()));
        let server = HttpServer::new(move || App::new().configure(pages::configure(state.clone())))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .expect("the pages listen")
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            db,
            sandbox,
            config,
            settings,
            onboarding,
            refresher,
            pages,
            backoffice,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
            servers: vec![handle, backoffice_server],
        }
    }

    pub async fn stop(self) {
        for server in &self.servers {
            server.stop(false).await;
        }
    }
}

/// The provider's OAuth2 client, pointed at the sandbox.
pub fn oauth_client(sandbox: &SandboxHandle, config: &ProviderConfig) -> HttpOAuthClient {
    HttpOAuthClient::new(
        &sandbox.base_url(),
        &config.client_id,
        config.client_secret.clone(),
        config.redirect_uri.as_str(),
        Duration::from_secs(10),
    )
    .expect("the OAuth2 client")
}

/// The provider's back office: `/done` shows what the relay sent the browser back with.
fn start_backoffice() -> (String, ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the back office");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let server = HttpServer::new(|| {
        App::new().route(
            "/done",
            web::get().to(|req: actix_web::HttpRequest| async move {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
                let mut html = String::from("<!doctype html><html><head><title>Back office</title></head><body><h1 id=\"backoffice\">Back office</h1><dl>");
                for (k, v) in pairs {
                    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
                    html.push_str(&format!("<dt>{}</dt><dd id=\"{}\">{}</dd>", escape(&k), escape(&k), escape(&v)));
                }
                html.push_str("</dl></body></html>");
                HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html)
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .expect("the back office listens")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (base, handle)
}

/// The `Location` of a redirect answer.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The query pairs of `url`.
pub fn query_of(url: &str) -> std::collections::BTreeMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// A key ring of `keys`.
pub fn ring(keys: &[StoreKey]) -> KeyRing {
    KeyRing::from_config(keys.iter().map(|k| (k.id.as_str(), &k.key))).expect("a key ring")
}
