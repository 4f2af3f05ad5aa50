//! Reconciliation: the order list read back, so an order state whose every push was lost
//! still reaches the queue (contract, "Recovery").
//!
//! While its process is the token keeper, the sweeper reads, every `reconcile.interval_secs`,
//! the event log from a little before the window to now, noting each (appid, sub_order_id,
//! state_code) it holds; then, per merchant, it pages through `retailerGetSubList` for the
//! window `[now - lookback_secs, now - settle_secs]` and publishes, with confirms, an event
//! for every state the log does not hold. Those events go to the log too, so the next sweep
//! finds them: a sweep that finds nothing missing publishes nothing.

mod metrics;

use crate::trace::TraceContext;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::amqp::{topology::event_log, Broker, Outgoing, PublishError, Publisher};
use crate::config::{Merchant, ReconcileSettings, Settings};
use crate::event::log::{received_at, LogError, LogReader};
use crate::event::{Event, EventId, EventKind, Source};
use crate::keeper::{KeeperError, TokenKeeper};
use crate::permits::{NoPermit, Permits};
use crate::weibo::{CallOutcome, SubListPage, WeiboClient};

pub use metrics::ReconcileMetrics;

/// Rows asked for per page (the model's maximum; the platform may send fewer).
const PAGE_SIZE: u32 = 100;
/// A sweep stops paging after this many pages, whatever `total` says.
const MAX_PAGES: u32 = 10_000;
/// The log is read from this long before the window, for events received a little late.
pub(crate) const LOG_MARGIN: Duration = Duration::from_secs(600);

/// An order state: (appid, sub_order_id, state_code as text).
type State = (String, String, String);

/// Why a merchant's sweep stopped; it is tried again at the next interval.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// No token.
    #[error(transparent)]
    Token(#[from] KeeperError),
    /// No permit to call.
    #[error(transparent)]
    Permit(#[from] NoPermit),
    /// The platform did not answer the list call with a list.
    #[error("retailerGetSubList failed: {0}")]
    Platform(CallOutcome),
    /// The event log could not be read.
    #[error("event log not read: {0}")]
    Log(#[from] LogError),
    /// A reconciled event was not stored.
    #[error("reconciled event not stored: {0}")]
    Publish(#[from] PublishError),
    /// No broker connection.
    #[error("broker not connected")]
    NotConnected,
    /// This process stopped being the token keeper during the sweep.
    #[error("no longer the token keeper")]
    NotLeading,
    /// The process is stopping.
    #[error("stopping")]
    Stopping,
}

/// The reconciliation sweeper of one process; it sweeps only while the process leads.
pub struct Sweeper {
    broker: Broker,
    publisher: Publisher,
    keeper: TokenKeeper,
    client: WeiboClient,
    permits: Permits,
    settings: ReconcileSettings,
    events_exchange: String,
    log: String,
    metrics: ReconcileMetrics,
}

impl Sweeper {
    /// A sweeper for `settings`, sharing the process's broker link, keeper, client and permits.
    pub fn new(
        settings: &Settings,
        broker: Broker,
        keeper: TokenKeeper,
        client: WeiboClient,
        permits: Permits,
        metrics: ReconcileMetrics,
    ) -> Self {
        Self {
            publisher: broker.publisher(),
            broker,
            keeper,
            client,
            permits,
            settings: settings.reconcile.clone(),
            events_exchange: settings.amqp.events_exchange.clone(),
            log: event_log(&settings.amqp.events_queue),
            metrics,
        }
    }

    /// Sweeps every `interval_secs` while this process leads, until `stop`.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.settings.interval());
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
        })
    }

    /// One sweep of every merchant.
    #[tracing::instrument(name = "reconcile", skip_all)]
    pub async fn sweep_all(&self, stop: &CancellationToken) {
        let now = SystemTime::now();
        let start = now - Duration::from_secs(self.settings.lookback_secs);
        let end = now - Duration::from_secs(self.settings.settle_secs);
        let mut logged = match self.logged_since(start - LOG_MARGIN, now, stop).await {
            Err(SweepError::Stopping) => return,
            Ok(logged) => logged,
            Err(error) => {
                for _ in self.keeper.merchants().iter() {
                    self.metrics.failed();
                }
                tracing::warn!(%error, "reconciliation sweep failed; retried next interval");
                return;
            }
        };
        let merchants: Vec<Merchant> = self.keeper.merchants().iter().cloned().collect();
        for merchant in &merchants {
            match self
                .sweep(merchant, start, end, now, &mut logged, stop)
                .await
            {
                Ok(published) => {
                    self.metrics.succeeded(&merchant.appid, now);
                    if published > 0 {
                        tracing::info!(appid = %merchant.appid, published, "reconciled order states the pushes never brought");
                    }
                }
                Err(SweepError::Stopping) => return,
                Err(SweepError::NotLeading) => {
                    // Another process leads now and sweeps from where the log stands.
                    tracing::info!(appid = %merchant.appid, "reconciliation sweep handed over");
                    return;
                }
                Err(error) => {
                    self.metrics.failed();
                    tracing::warn!(appid = %merchant.appid, %error, "reconciliation sweep failed; retried next interval");
                }
            }
        }
    }

    /// Every order state the event log holds, read from `since` to the first event received
    /// after `until` or the end of the log as it stood when the reading began.
    async fn logged_since(
        &self,
        since: SystemTime,
        until: SystemTime,
        stop: &CancellationToken,
    ) -> Result<HashSet<State>, SweepError> {
        let link = self.broker.current().ok_or(SweepError::NotConnected)?;
        let mut reader =
            LogReader::to_end(link.connection(), &self.publisher, &self.log, since).await?;
        let mut logged = HashSet::new();
        let read = async {
            while let Some(delivery) = reader.next().await? {
                if stop.is_cancelled() {
                    return Err(SweepError::Stopping);
                }
                if received_at(&delivery).is_some_and(|at| at > until) {
                    break;
                }
                if let Some(state) = logged_state(&delivery.data) {
                    logged.insert(state);
                }
            }
            Ok::<_, SweepError>(())
        };
        let result = read.await;
        reader.close().await;
        result.map(|()| logged)
    }

    /// One merchant: pages through the list and publishes what the log lacks.
    async fn sweep(
        &self,
        merchant: &Merchant,
        start: SystemTime,
        end: SystemTime,
        now: SystemTime,
        logged: &mut HashSet<State>,
        stop: &CancellationToken,
    ) -> Result<u64, SweepError> {
        let mut published = 0;
        let mut seen = 0u64;
        for page in 1..=MAX_PAGES {
            if stop.is_cancelled() {
                return Err(SweepError::Stopping);
            }
            let rows = self.page(merchant, start, end, page).await?;
            if rows.list.is_empty() {
                break;
            }
            seen += rows.list.len() as u64;
            for row in &rows.list {
                let Some(state) = row_state(&merchant.appid, row) else {
                    continue;
                };
                if logged.contains(&state) {
                    continue;
                }
                if !self.keeper.is_leading() {
                    return Err(SweepError::NotLeading);
                }
                self.publish(&state, row, now).await?;
                logged.insert(state);
                published += 1;
            }
            if seen >= rows.total {
                break;
            }
        }
        Ok(published)
    }

    /// One page, with the token keeper's compensation path: a rejected token is reported and
    /// the page asked for once more.
    async fn page(
        &self,
        merchant: &Merchant,
        start: SystemTime,
        end: SystemTime,
        page: u32,
    ) -> Result<SubListPage, SweepError> {
        for _ in 0..2 {
            let token = self.keeper.get(&merchant.appid).await?;
            self.permits.take().await?;
            match self
                .client
                .sub_list(merchant, &token, start, end, page, PAGE_SIZE)
                .await
            {
                Ok(rows) => return Ok(rows),
                Err(CallOutcome::TokenRejected { .. }) => {
                    self.keeper.invalidate(&merchant.appid, &token)?;
                }
                Err(other) => return Err(SweepError::Platform(other)),
            }
        }
        Err(SweepError::Platform(CallOutcome::Transient {
            code: None,
            reason: "access_token rejected twice".into(),
        }))
    }

    async fn publish(&self, state: &State, row: &Value, now: SystemTime) -> Result<(), SweepError> {
        let (appid, sub_order_id, state_code) = state;
        let no_params = BTreeMap::new();
        let event = Event {
            id: EventId::reconciled(appid, sub_order_id, state_code),
            appid,
            type_code: 2,
            kind: EventKind::SubOrder,
            sub_order_id: Some(sub_order_id.clone()),
            state_code: row.get("state_code").unwrap_or(&Value::Null),
            timestamp: i64::try_from(crate::clock::secs_of(now)).unwrap_or(i64::MAX),
            params: &no_params,
            data: row,
            source: Source::Reconcile,
        };
        let received_at = SystemTime::now();
        self.publisher
            .publish(Outgoing {
                exchange: &self.events_exchange,
                routing_key: &event.routing_key(),
                body: &event.envelope(received_at),
                // A state learnt by reading the list back starts a trace of its own.
                properties: event.properties(received_at, &TraceContext::next_hop(None)),
            })
            .await?;
        self.metrics.reconciled();
        Ok(())
    }
}

/// Text of a state code or id, number or string alike.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The state an event of the log tells of, from its envelope.
fn logged_state(envelope: &[u8]) -> Option<State> {
    let v: Value = serde_json::from_slice(envelope).ok()?;
    Some((
        v.get("appid")?.as_str()?.to_owned(),
        text(v.get("sub_order_id")?)?,
        text(v.get("state_code")?)?,
    ))
}

/// The state a row of the order list tells of.
fn row_state(appid: &str, row: &Value) -> Option<State> {
    Some((
        appid.to_owned(),
        text(row.get("sub_order_id")?)?,
        text(row.get("state_code")?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_the_same_whether_pushed_or_listed_as_number_or_text() {
        let pushed = br#"{"event_id":"x","appid":"100023","type":2,"kind":"sub_order","sub_order_id":"366383890000352","state_code":201,"data":{}}"#;
        let listed = serde_json::json!({"sub_order_id": 366383890000352u64, "state_code": "201"});
        assert_eq!(logged_state(pushed), row_state("100023", &listed));
        assert_eq!(logged_state(b"not json"), None);
        assert_eq!(
            logged_state(br#"{"appid":"1","sub_order_id":null,"state_code":1}"#),
            None
        );
        assert_eq!(row_state("1", &serde_json::json!({"state_code": 1})), None);
    }

    #[test]
    fn a_reconciled_event_id_is_the_contracts() {
        use sha2::{Digest, Sha256};
        let expected = hex::encode(&Sha256::digest(b"100023\nreconcile\n42\n301")[..16]);
        assert_eq!(
            EventId::reconciled("100023", "42", "301").to_string(),
            expected
        );
    }
}
