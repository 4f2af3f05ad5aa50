//! Provider mode inside a running relay: the store (migrated at start), the connect pages for
//! the public listener, and the tasks every process runs (refreshing due merchants, publishing
//! merchant events, forgetting expired links, counting merchants by status). Each task is safe
//! to run in every process at once: the store's row locks and leases make them one.

mod events;
mod metrics;
mod pushes;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::web::Data;
use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use events::EventPublisher;
pub use metrics::{ProviderMetrics, RefreshResult};
pub use pushes::{ProviderPushes, UidBook};

use crate::amqp::{Broker, Names};
use crate::provider::oauth::{HttpOAuthClient, OAuthClient};
use crate::provider::onboarding::Onboarding;
use crate::provider::pages::PagesState;
use crate::provider::refresh::{RefreshPolicy, Refresher};
use crate::provider::settings::ProviderConfig;
use crate::provider::store::Store;
use crate::supervise::{Task, Tasks};

/// Connections to the store per process: more than the refreshes one process runs at once
/// (each holds one for its row lock) plus the pages, the publisher and the counts.
const STORE_CONNECTIONS: u32 = 12;
/// Deadline of each OAuth2 call: well under the 60 s PostgreSQL lets a refresh hold its row.
const OAUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between reloads of the receiver's uid book, counts of merchants by status, and sweeps
/// of expired links: a merchant just authorized is found by pushes within about this.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// What `Application::build` needs of provider mode.
pub struct ProviderRuntime {
    /// The connect pages' state, for the public listener.
    pub pages: Data<PagesState>,
    /// The store (the CLI and tests read it).
    pub store: Store,
    /// What the receiver needs to name each push's merchant.
    pub pushes: ProviderPushes,
    /// Each merchant's token for the worker's calls, refreshed once across the deployment.
    pub refresher: Refresher,
    /// Links and revocation, for the merchants API.
    pub onboarding: Onboarding,
}

impl ProviderRuntime {
    /// Connects to the store and migrates it, then starts the tasks in `tasks`. An unreachable
    /// store stops the start (the error says so, never the URL's password).
    pub async fn start(
        config: &ProviderConfig,
        oauth_base: &url::Url,
        broker: &Broker,
        names: &Names,
        metrics: ProviderMetrics,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        let store = open_store(config).await?;
        let client = oauth_client(config, oauth_base)?;
        let policy = RefreshPolicy::default();
        let onboarding = onboarding(config, oauth_base, &store, client.clone())?;
        let refresher = Refresher::new(store.clone(), client, config.keys.clone(), policy);
        let sweeps = (refresher.clone(), metrics.clone());
        tasks.spawn(Task::MerchantRefresh, move |stop| {
            let (refresher, metrics) = sweeps.clone();
            refresh(refresher, metrics, stop)
        });
        let publisher = (
            store.clone(),
            broker.publisher(),
            names.events_exchange().to_owned(),
        );
        let counted = metrics.clone();
        tasks.spawn(Task::MerchantEvents, move |stop| {
            let (store, publisher, exchange) = publisher.clone();
            EventPublisher {
                store,
                publisher,
                exchange,
                metrics: counted.clone(),
            }
            .run(stop)
        });
        let uids = UidBook::default();
        // The first book before any push is taken: a restarted receiver refuses no merchant.
        uids.reload(&store)
            .await
            .context("provider.store_url: cannot read the authorized merchants")?;
        let kept = (store.clone(), uids.clone());
        tasks.spawn(Task::MerchantHousekeeping, move |stop| {
            let (store, uids) = kept.clone();
            housekeeping(store, uids, metrics.clone(), stop)
        });
        Ok(Self {
            pages: Data::new(PagesState::new(onboarding.clone())),
            onboarding,
            store,
            pushes: ProviderPushes {
                field: config.push_merchant_field.clone(),
                uids,
            },
            refresher,
        })
    }
}

/// The provider app's OAuth2 client on `oauth_base`.
pub fn oauth_client(
    config: &ProviderConfig,
    oauth_base: &url::Url,
) -> anyhow::Result<Arc<dyn OAuthClient>> {
    let client = HttpOAuthClient::new(
        oauth_base.as_str(),
        &config.client_id,
        config.client_secret.clone(),
        config.redirect_uri.as_str(),
        OAUTH_TIMEOUT,
    )
    .context("provider: cannot build the OAuth2 client")?;
    Ok(Arc::new(client))
}

/// Onboarding over `store` with the default refresh policy (the CLI's and the pages').
pub fn onboarding(
    config: &ProviderConfig,
    oauth_base: &url::Url,
    store: &Store,
    client: Arc<dyn OAuthClient>,
) -> anyhow::Result<Onboarding> {
    Onboarding::new(
        store.clone(),
        client,
        config.clone(),
        oauth_base.as_str(),
        RefreshPolicy::default(),
    )
    .context("weibo.oauth_base: cannot name the authorize endpoint")
}

/// The store, connected and migrated.
pub async fn open_store(config: &ProviderConfig) -> anyhow::Result<Store> {
    let store = Store::connect(&config.store_url, STORE_CONNECTIONS)
        .await
        .context("provider.store_url: cannot connect to PostgreSQL")?;
    store
        .migrate()
        .await
        .context("provider.store_url: cannot apply the store's migrations")?;
    Ok(store)
}

/// Sweeps due merchants every policy tick, counting each sweep.
async fn refresh(refresher: Refresher, metrics: ProviderMetrics, stop: CancellationToken) {
    loop {
        match refresher.sweep(SystemTime::now()).await {
            Ok(report) => metrics.count_sweep(&report),
            Err(e) => {
                tracing::error!(error = %e, "merchant refresh sweep failed");
                metrics.count_sweep(&crate::provider::refresh::SweepReport {
                    errors: 1,
                    ..Default::default()
                });
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(refresher.policy().tick) => {}
        }
    }
}

/// Reloads the uid book, counts merchants by status and forgets links and states that
/// expired.
async fn housekeeping(
    store: Store,
    uids: UidBook,
    metrics: ProviderMetrics,
    stop: CancellationToken,
) {
    loop {
        if let Err(e) = uids.reload(&store).await {
            tracing::warn!(error = %e, "cannot reload the authorized merchants; pushes use the last list");
        }
        match store.count_by_status().await {
            Ok(counts) => metrics.set_merchants(&counts),
            Err(e) => tracing::warn!(error = %e, "cannot count merchants"),
        }
        if let Err(e) = store.forget_expired_links(SystemTime::now()).await {
            tracing::warn!(error = %e, "cannot forget expired links");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HOUSEKEEPING) => {}
        }
    }
}
