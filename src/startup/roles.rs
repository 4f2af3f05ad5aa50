//! Each role's start: what it builds on the process's broker link and metrics, and the tasks
//! it runs.

use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::web;

use crate::amqp::{Broker, Names};
use crate::gateway::{Gateway, GatewayMetrics};
use crate::http::ReceiverState;
use crate::keeper::election::Agent;
use crate::keeper::{KeeperOptions, TokenKeeper};
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::permits::{PermitMetrics, Permits};
use crate::provider::run::{ProviderMetrics, ProviderRuntime};
use crate::provider::settings::ProviderConfig;
use crate::push::PushRelay;
use crate::reconcile::{ReconcileMetrics, Sweeper};
use crate::settings::Settings;
use crate::supervise::{Task, Tasks};
use crate::telemetry::LogLimit;
use crate::tokens::Tokens;
use crate::weibo::WeiboClient;
use crate::worker::backlog::Backlog;
use crate::worker::{Worker, WorkerMetrics};

/// Refusal log lines per second (and burst); the metrics count every refusal regardless.
const REFUSAL_LOG_PER_SEC: NonZeroU32 = NonZeroU32::new(10).unwrap();

/// Where a role's tasks run: what stops at the shutdown token, and what stops after it.
#[derive(Clone, Copy)]
pub(super) struct Groups<'a> {
    /// The worker's consumer.
    pub(super) serving: &'a Tasks,
    /// What the commands in flight still need.
    pub(super) support: &'a Tasks,
}

/// The fulfilment worker and what it needs: the token keeper (one for the deployment,
/// elected through the broker), the platform's rate limit shared by every process through
/// the permits the keeper issues, reconciliation (which sweeps only while this process
/// leads), and the backlog alert's numbers. Returns what the gateway calls through too.
pub(super) fn worker(
    settings: &Settings,
    names: &Names,
    broker: &Broker,
    metrics: &Metrics,
    groups: Groups<'_>,
    provider: Option<&ProviderRuntime>,
) -> anyhow::Result<WorkerParts> {
    let tasks = groups.support;
    let registry = metrics.registry();
    let client = WeiboClient::new(&settings.weibo)?;
    let wait = settings.worker.token_wait_ms.get();
    let options = KeeperOptions {
        wait_timeout: wait,
        ..KeeperOptions::default()
    };
    // Provider mode: the keeper holds no token (each merchant's is in the store) but still
    // leads, issuing the deployment's permits sealed under the provider's keys.
    let merchants = &settings.merchants;
    let keyring = Keyring::derive(&settings.signers());
    let (keeper, events) = TokenKeeper::new(Arc::new(client.clone()), merchants, options, tasks);
    keeper.metrics().register(registry)?;
    let rate = settings.weibo.rate_limit_per_sec.as_u32();
    let agent = Agent::new(
        broker.clone(),
        keeper.clone(),
        names.clone(),
        rate,
        keyring.clone(),
        tasks,
    )?;
    agent.start(events, tasks);
    let permits = Permits::start(
        broker.clone(),
        names.permits().to_owned(),
        wait,
        settings.gateway.share.get(),
        keyring,
        PermitMetrics::register(registry)?,
        tasks,
    );
    let sweeper = Sweeper::new(
        settings,
        names,
        broker.clone(),
        keeper.clone(),
        client.clone(),
        permits.clone(),
        ReconcileMetrics::register(registry)?,
    );
    let sweeper = match provider {
        Some(p) => sweeper.for_provider(p.refresher.clone(), p.store.clone()),
        None => sweeper,
    };
    tasks.spawn(Task::Sweeper, move |stop| sweeper.clone().run(stop));
    let worker_metrics = WorkerMetrics::register(registry)?;
    let tokens = match provider {
        Some(provider) => Tokens::Provider(provider.refresher.clone()),
        None => Tokens::Keeper(keeper.clone()),
    };
    Worker::new(
        settings,
        names,
        broker.clone(),
        tokens,
        permits.clone(),
        client.clone(),
        worker_metrics,
    )
    .start(groups.serving);
    Backlog::register(registry, broker.clone(), names)?.start(tasks);
    Ok(WorkerParts {
        keeper,
        permits,
        client,
    })
}

/// What a worker process calls the platform with: readiness needs the keeper, the gateway
/// all three.
pub(super) struct WorkerParts {
    pub(super) keeper: TokenKeeper,
    pub(super) permits: Permits,
    pub(super) client: WeiboClient,
}

/// The platform gateway on this process's keeper, permits and client.
pub(super) fn gateway(
    settings: &Settings,
    parts: &WorkerParts,
    metrics: &Metrics,
) -> anyhow::Result<web::Data<Gateway>> {
    Ok(web::Data::new(Gateway::new(
        settings,
        parts.keeper.clone(),
        parts.permits.clone(),
        parts.client.clone(),
        GatewayMetrics::register(metrics.registry())?,
    )))
}

/// The push receiver's state: verification, dedup, and its own publisher to the events
/// exchange.
pub(super) fn receiver(
    settings: &Settings,
    names: &Names,
    broker: &Broker,
    metrics: &Arc<Metrics>,
    provider: Option<&ProviderRuntime>,
) -> web::Data<ReceiverState> {
    // Provider mode: the provider signs every push; a signed uid names the merchant.
    let merchants = settings.signers();
    web::Data::new(ReceiverState {
        provider: provider.map(|p| p.pushes.clone()),
        merchants: merchants.clone(),
        relay: PushRelay::new(
            broker.clone(),
            names.events_exchange().to_owned(),
            settings.push.dedup_capacity.as_usize(),
            metrics.clone(),
            Keyring::derive(&merchants),
        ),
        metrics: metrics.clone(),
        max_body_bytes: settings.http.max_body_bytes.as_usize(),
        body_timeout: settings.http.body_timeout_ms.get(),
        max_skew: settings.push.max_skew_secs.get(),
        refusal_log: LogLimit::per_second(REFUSAL_LOG_PER_SEC),
        success_body: settings.push.success_body.clone().into(),
        success_content_type: settings.push.success_content_type.clone(),
    })
}

/// Provider mode's store, pages and tasks. The tasks stop with the support group: a refresh
/// or a publish in flight at a stop finishes first.
pub(super) async fn provider(
    config: &ProviderConfig,
    settings: &Settings,
    names: &Names,
    broker: &Broker,
    metrics: ProviderMetrics,
    tasks: &Tasks,
) -> anyhow::Result<ProviderRuntime> {
    tracing::info!(
        appid = %config.appid,
        "provider mode: merchants are onboarded by OAuth2 and kept in the store"
    );
    ProviderRuntime::start(
        config,
        &settings.weibo.oauth_base,
        broker,
        names,
        metrics,
        tasks,
    )
    .await
}
