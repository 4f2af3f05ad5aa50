//! Reconciliation: the order list read back, so an order state whose every push was lost
//! still reaches the queue (contract, "Recovery").
//!
//! While its process is the token keeper, the sweeper reads, every `reconcile.interval_secs`,
//! the event log from a little before the window to the read mark it appends, noting each
//! (appid, sub_order_id, state_code) the relay sealed; then, per merchant (provider mode:
//! per merchant authorized in the store, with its own token: [`targets`]), it pages through
//! `retailerGetSubList` for the window `[now - lookback_secs, now - settle_secs]` and
//! publishes, with confirms, an event for every state the log does not hold. Those events go
//! to the log too, so the next sweep finds them: a sweep that finds nothing missing publishes
//! nothing.
//!
//! Neither the list nor the log is trusted: entries of the log the relay did not seal are
//! skipped (they can neither hide a state nor end the reading), rows are checked before
//! anything is published, and every sweep is bounded in pages, rows and events.

mod error;
mod metrics;
mod rows;
mod targets;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::amqp::{Broker, Names, Publisher};
use crate::clock::earlier;
use crate::event::log::{Accept, LogReader};
use crate::event::{Event, EventId, EventKind, MerchantTag, Source};
use crate::ids::AppId;
use crate::keeper::TokenKeeper;
use crate::keys::Keyring;
use crate::permits::Permits;
use crate::provider::domain::MerchantRef;
use crate::provider::refresh::Refresher;
use crate::provider::store::Store;
use crate::settings::{Merchants, ReconcileSettings, Settings};
use crate::tokens::Tokens;
use crate::trace::TraceContext;
use crate::weibo::{CallOutcome, SubListPage, WeiboClient};

use crate::metrics::Label;
pub use error::SweepError;
use error::Swept;
pub use metrics::{LogSkip, ReconcileMetrics, RowRefusal, Truncation};
use rows::{fingerprint, Listed, Refused, StateKey};
use targets::{Target, Targets};

/// Rows asked for per page (the model's maximum; the platform may send fewer, and what it
/// sends beyond this is refused).
const PAGE_SIZE: u32 = 100;
/// A sweep of one merchant stops paging after this many pages, whatever `total` says.
const MAX_PAGES: u32 = 10_000;
/// A sweep of one merchant publishes at most this many events; the next sweep goes on.
const MAX_EVENTS: u64 = 10_000;
/// The log is read from this long before the window, for events received a little late.
pub(crate) const LOG_MARGIN: Duration = Duration::from_secs(600);

/// The reconciliation sweeper of one process; it sweeps only while the process leads.
/// Clones share the broker link, keeper, client and permits.
#[derive(Clone)]
pub struct Sweeper {
    broker: Broker,
    publisher: Publisher,
    keeper: TokenKeeper,
    tokens: Tokens,
    targets: Targets,
    signers: Merchants,
    client: WeiboClient,
    permits: Permits,
    settings: ReconcileSettings,
    events_exchange: String,
    log: String,
    keys: Keyring,
    max_entry_bytes: usize,
    metrics: ReconcileMetrics,
}

impl Sweeper {
    /// A sweeper for `settings`, sharing the process's broker link, keeper, client and permits.
    pub fn new(
        settings: &Settings,
        names: &Names,
        broker: Broker,
        keeper: TokenKeeper,
        client: WeiboClient,
        permits: Permits,
        metrics: ReconcileMetrics,
    ) -> Self {
        let signers = settings.signers();
        Self {
            publisher: broker.publisher(),
            broker,
            tokens: Tokens::Keeper(keeper.clone()),
            targets: Targets::Merchants(keeper.clone()),
            keeper,
            client,
            permits,
            settings: settings.reconcile.clone(),
            events_exchange: names.events_exchange().to_owned(),
            log: names.event_log().to_owned(),
            keys: Keyring::derive(&signers),
            signers,
            max_entry_bytes: crate::event::max_envelope_bytes(
                settings.http.max_body_bytes.as_usize(),
            ),
            metrics,
        }
    }

    /// Provider mode: sweeps each merchant authorized in `store`, with its token from
    /// `refresher`, signed by the provider.
    pub fn for_provider(mut self, refresher: Refresher, store: Store) -> Self {
        if let Some(signer) = self.signers.iter().next() {
            self.targets = Targets::Provider {
                signer: signer.clone(),
                store,
            };
            self.tokens = Tokens::Provider(refresher);
        }
        self
    }

    /// Sweeps every `interval_secs` while this process leads, until `stop`. Run it under
    /// [`crate::supervise`], which restarts it should it ever panic.
    pub async fn run(self, stop: CancellationToken) {
        // tokio's interval panics on a zero period, and on the first tick past what its
        // clock can add: a setting out of range costs sweeps, never the task.
        let period = self
            .settings
            .interval_secs
            .get()
            .clamp(Duration::from_secs(1), Duration::from_secs(365 * 24 * 3600));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if self.settings.enabled && self.keeper.is_leading() {
                self.sweep_all(&stop).await;
            }
        }
        self.publisher.close().await;
    }

    /// One sweep of every merchant.
    #[tracing::instrument(name = "reconcile", skip_all)]
    pub async fn sweep_all(&self, stop: &CancellationToken) {
        let now = SystemTime::now();
        let start = earlier(now, self.settings.lookback_secs.get());
        let end = earlier(now, self.settings.settle_secs.get());
        let targets = match self.targets.list().await {
            Ok(targets) => targets,
            Err(error) => {
                self.metrics.failed();
                tracing::warn!(%error, "cannot list the merchants to reconcile; retried next interval");
                return;
            }
        };
        let mut logged = match self.logged_since(earlier(start, LOG_MARGIN), stop).await {
            Err(SweepError::Stopping) => return,
            Ok(logged) => logged,
            Err(error) => {
                for _ in &targets {
                    self.metrics.failed();
                }
                tracing::warn!(%error, "reconciliation sweep failed; retried next interval");
                return;
            }
        };
        for target in &targets {
            let appid = target.signer.appid();
            let merchant_ref = target.merchant_ref().map(MerchantRef::as_str);
            let span = tracing::info_span!("merchant", %appid, merchant_ref);
            let swept = self
                .sweep(target, start, end, now, &mut logged, stop)
                .instrument(span)
                .await;
            match swept {
                Ok(swept) => {
                    self.metrics.succeeded(appid, now);
                    if swept.published > 0 {
                        tracing::info!(%appid, published = swept.published, "reconciled order states the pushes never brought");
                    }
                    if let Some(reason) = swept.truncated {
                        self.metrics.truncated(reason);
                        tracing::warn!(%appid, reason = reason.as_str(), published = swept.published, "reconciliation sweep stopped before the end of the order list; the next sweep goes on");
                    }
                }
                Err(SweepError::Stopping) => return,
                Err(SweepError::NotLeading) => {
                    // Another process leads now and sweeps from where the log stands.
                    tracing::info!(%appid, "reconciliation sweep handed over");
                    return;
                }
                Err(error) => {
                    self.metrics.failed();
                    tracing::warn!(%appid, %error, "reconciliation sweep failed; retried next interval");
                }
            }
        }
    }

    /// Every order state the relay sealed into the log from `since` up to the read mark it
    /// appends first: that mark alone ends the reading, whatever times entries claim.
    async fn logged_since(
        &self,
        since: SystemTime,
        stop: &CancellationToken,
    ) -> Result<HashSet<StateKey>, SweepError> {
        let link = self.broker.current().ok_or(SweepError::NotConnected)?;
        let accept = Accept {
            keys: self.keys.clone(),
            max_entry_bytes: Some(self.max_entry_bytes),
        };
        let mut reader =
            LogReader::to_end(link.connection(), &self.publisher, &self.log, since, accept).await?;
        let mut logged = HashSet::new();
        let read = async {
            while let Some(entry) = reader.next().await? {
                if stop.is_cancelled() {
                    return Err(SweepError::Stopping);
                }
                if let Some(state) = rows::logged(&entry.appid, &entry.delivery.data) {
                    logged.insert(state);
                }
            }
            Ok::<_, SweepError>(())
        };
        let result = read.await;
        let skipped = reader.skipped();
        reader.close().await;
        self.metrics.skipped(skipped);
        if skipped.total() > 0 {
            tracing::warn!(
                unsealed = skipped.unsealed,
                oversized = skipped.oversized,
                "skipped entries of the event log this deployment did not write; someone else publishes to it"
            );
        }
        result.map(|()| logged)
    }

    /// One merchant: pages through the list and publishes what the log lacks.
    async fn sweep(
        &self,
        target: &Target,
        start: SystemTime,
        end: SystemTime,
        now: SystemTime,
        logged: &mut HashSet<StateKey>,
        stop: &CancellationToken,
    ) -> Result<Swept, SweepError> {
        let appid = target.signer.appid();
        let mut swept = Swept {
            published: 0,
            truncated: Some(Truncation::PageLimit),
        };
        let mut seen = 0u64;
        let mut pages = HashSet::new();
        let mut refused = Refused::default();
        let result = async {
            for page in 1..=MAX_PAGES {
                if stop.is_cancelled() {
                    return Err(SweepError::Stopping);
                }
                let rows = self.page(target, start, end, page).await?;
                if rows.list.is_empty() {
                    swept.truncated = None;
                    break;
                }
                if !pages.insert(fingerprint(&rows.list)) {
                    swept.truncated = Some(Truncation::RepeatedPage);
                    break;
                }
                seen = seen.saturating_add(rows.list.len() as u64);
                for (i, raw) in rows.list.iter().enumerate() {
                    if i >= PAGE_SIZE as usize {
                        refused.note(RowRefusal::ExcessRows, format!("page {page}, row {i}"));
                        continue;
                    }
                    let listed = match rows::listed(raw) {
                        Ok(listed) => listed,
                        Err((reason, example)) => {
                            refused.note(reason, example);
                            continue;
                        }
                    };
                    let key = listed.key(appid);
                    if logged.contains(&key) {
                        continue;
                    }
                    if swept.published >= MAX_EVENTS {
                        swept.truncated = Some(Truncation::EventLimit);
                        return Ok(());
                    }
                    if !self.keeper.is_leading() {
                        return Err(SweepError::NotLeading);
                    }
                    self.publish(appid, target.tag(), &listed, now).await?;
                    logged.insert(key);
                    swept.published = swept.published.saturating_add(1);
                }
                if seen >= rows.total {
                    swept.truncated = None;
                    break;
                }
            }
            Ok(())
        }
        .await;
        if !refused.is_empty() {
            for (reason, n) in refused.counts() {
                self.metrics.refused(reason, n);
            }
            tracing::warn!(%appid, refused = %refused.summary(), "refused rows of the order list; none of them published");
        }
        result.map(|()| swept)
    }

    /// One page, with the token keeper's compensation path: a rejected token is reported and
    /// the page asked for once more.
    async fn page(
        &self,
        target: &Target,
        start: SystemTime,
        end: SystemTime,
        page: u32,
    ) -> Result<SubListPage, SweepError> {
        let (signer, merchant) = (&target.signer, target.merchant_ref());
        for _ in 0..2 {
            let held = self.tokens.get(signer.appid(), merchant).await?;
            self.permits.take().await?;
            match self
                .client
                .sub_list(signer, &held.token, start, end, page, PAGE_SIZE)
                .await
            {
                Ok(rows) => return Ok(rows),
                Err(CallOutcome::TokenRejected { .. }) => {
                    self.tokens.rejected(signer.appid(), &held).await?;
                }
                Err(other) => return Err(SweepError::Platform(other)),
            }
        }
        Err(SweepError::Platform(CallOutcome::Transient {
            code: None,
            reason: "access_token rejected twice".into(),
        }))
    }

    async fn publish(
        &self,
        appid: &AppId,
        merchant: Option<&MerchantTag>,
        listed: &Listed,
        now: SystemTime,
    ) -> Result<(), SweepError> {
        // The keys of every merchant swept are in the ring: both come from the settings.
        let keys = self
            .keys
            .merchant(appid)
            .ok_or_else(|| SweepError::NoKeys(appid.clone()))?;
        let no_params = BTreeMap::new();
        let event = Event {
            merchant,
            id: EventId::reconciled(appid, &listed.sub_order_id, &listed.state_code),
            appid,
            type_code: 2,
            kind: EventKind::SubOrder,
            sub_order_id: Some(listed.sub_order_id.to_string()),
            state_code: listed.row.get("state_code").unwrap_or(&Value::Null),
            timestamp: i64::try_from(crate::clock::secs_of(now)).unwrap_or(i64::MAX),
            params: &no_params,
            data: &listed.row,
            source: Source::Reconcile,
        };
        // A state learnt by reading the list back starts a trace of its own.
        let publication = event.publication(SystemTime::now(), &TraceContext::next_hop(None), keys);
        publication
            .publish_on(&self.publisher, &self.events_exchange)
            .await?;
        self.metrics.reconciled();
        Ok(())
    }
}
