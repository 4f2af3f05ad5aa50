//! `demo --provider --merchants N`: the demo in service-provider mode. A PostgreSQL database of
//! its own on the local server (created, dropped at the end), N merchants onboarded through the
//! real flow over HTTP (the link page, its button, the sandbox's consent page, the callback),
//! then orders for all of them: pushed with each merchant's uid, answered by commands naming
//! its merchant_ref, each call made with that merchant's token.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

use crate::sandbox::{OAuth2App, SandboxHandle};
use weibo_relay::provider::settings::{Provider, ProviderSettings, StoreKey};

/// The local PostgreSQL the demo makes its database on (trust auth, as `.ci/run` sets up).
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const CLIENT_ID: &str = "772915";
/// Uids of the demo's merchants start here.
const FIRST_UID: u64 = 1_000_000_001;

/// The provider side of one demo run: its database, its listener address, its app.
pub struct ProviderSetup {
    server: String,
    database: String,
    /// Where the relay listens (its connect pages' address is known before it starts).
    pub bind: SocketAddr,
    /// The `[provider]` section.
    pub provider: Provider,
    /// The provider's app as the platform registers it.
    pub app: OAuth2App,
}

/// One onboarded merchant.
#[derive(Debug, Clone)]
pub struct Onboarded {
    /// Its merchant_ref.
    pub merchant_ref: String,
    /// Its Weibo uid.
    pub uid: String,
}

impl ProviderSetup {
    /// Creates the run's database on `server` and the provider's settings around it.
    pub async fn create(server: &str) -> anyhow::Result<Self> {
        let database = format!("weibo_relay_demo_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .with_context(|| {
                format!("PostgreSQL is needed for --provider: nothing answers at {server} (bash .ci/ensure-provider-tools.sh installs and starts one; another: --store-server URL)")
            })?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .context("cannot create the demo's database")?;
        let _ = admin.close().await;
        let bind = SocketAddr::from(([127, 0, 0, 1], crate::stage::spare_port()));
        let base = format!("http://{bind}");
        let secret = |name: &str| format!("demo-{name}-{}", &database[17..29]);
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let settings = ProviderSettings {
            appid: crate::stage::STAGE_APPID.into(),
            sign_key: SecretString::from(secret("sign-key")),
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(secret("client-secret")),
            redirect_uri: format!("{base}/connect/callback"),
            public_base: base.clone(),
            return_url_origins: vec![],
            link_ttl_secs: 1800,
            store_url: SecretString::from(format!("{server}/{database}")),
            store_keys: vec![StoreKey {
                id: "demo".into(),
                key: SecretString::from(base64::engine::general_purpose::STANDARD.encode(key)),
            }],
            push_merchant_field: "uid".into(),
            name: Some("weibo-relay demo provider".into()),
        };
        let provider = Provider::try_from(settings).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut app = OAuth2App::new(
            CLIENT_ID,
            &secret("client-secret"),
            &format!("{base}/connect/callback"),
        );
        app.cancel_url = Some(format!("{base}/connect/cancelled"));
        Ok(Self {
            server: server.to_owned(),
            database,
            bind,
            provider,
            app,
        })
    }

    /// Onboards `count` merchants (`shop-1`, ...) as a merchant's browser would: each link
    /// opened, its button pressed, Authorize chosen on the consent page, the callback followed.
    pub async fn onboard(
        &self,
        sandbox: &SandboxHandle,
        count: usize,
    ) -> anyhow::Result<Vec<Onboarded>> {
        let config = self.provider.config();
        let oauth_base = url::Url::parse(&sandbox.base_url())?;
        let store = weibo_relay::provider::run::open_store(config).await?;
        let onboarding = weibo_relay::provider::run::onboarding(
            config,
            &oauth_base,
            &store,
            weibo_relay::provider::run::oauth_client(config, &oauth_base)?,
        )?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()?;
        let mut onboarded = Vec::with_capacity(count);
        for n in 0..count {
            let merchant_ref = format!("shop-{}", n + 1);
            let uid = (FIRST_UID + n as u64).to_string();
            let parsed = weibo_relay::provider::domain::MerchantRef::parse(&merchant_ref)
                .context("a merchant_ref")?;
            let link = onboarding
                .create_link(&parsed, None, std::time::SystemTime::now())
                .await?;
            consent(
                &http,
                link.url.as_str(),
                &sandbox.base_url(),
                &self.app,
                &uid,
            )
            .await
            .with_context(|| format!("onboarding {merchant_ref}"))?;
            onboarded.push(Onboarded { merchant_ref, uid });
        }
        store.close().await;
        Ok(onboarded)
    }

    /// Drops the run's database (its connections first).
    pub async fn drop_database(self) {
        let dropped = async {
            let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await?;
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .execute(&mut admin)
            .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!(
                "demo: the database {} was not dropped: {error}",
                self.database
            );
        }
    }
}

/// Link page, button, consent page (Authorize as `uid`), callback.
async fn consent(
    http: &reqwest::Client,
    link: &str,
    platform: &str,
    app: &OAuth2App,
    uid: &str,
) -> anyhow::Result<()> {
    let page = http.get(link).send().await?;
    anyhow::ensure!(
        page.status() == 200,
        "the link page answered {}",
        page.status()
    );
    let pressed = http.post(link).send().await?;
    anyhow::ensure!(
        pressed.status() == 303,
        "the button answered {}",
        pressed.status()
    );
    let to_weibo = location(&pressed)?;
    let state = url::Url::parse(&to_weibo)?
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .context("no state in the authorize URL")?;
    let decided = http
        .post(format!("{platform}/oauth2/authorize"))
        .form(&[
            ("client_id", app.client_id.as_str()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("response_type", "code"),
            ("state", &state),
            ("uid", uid),
            ("decision", "authorize"),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        decided.status() == 302,
        "the consent page answered {}",
        decided.status()
    );
    let callback = http.get(location(&decided)?).send().await?;
    anyhow::ensure!(
        callback.status() == 200,
        "the callback answered {}",
        callback.status()
    );
    Ok(())
}

fn location(answer: &reqwest::Response) -> anyhow::Result<String> {
    Ok(answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("no Location")?
        .to_owned())
}
