//! The token keeper against the sandbox: expiry, supersession, proactive refresh, recovery.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Barrier;
use weibo_relay::keeper::{KeeperOptions, Leading, TokenKeeper};
use weibo_relay::supervise::{TaskMetrics, Tasks};
use weibo_relay::weibo::{CallOutcome, Token};
use weibo_relay_tooling::sandbox::PAID;

use crate::support::{appid, eventually, sub, Platform};

const HOUR: Duration = Duration::from_secs(3600);
const CALLERS: usize = 20;

/// A keeper that leads from the start, as the only process: the keeper and what keeps it
/// leading.
fn keeper(p: &Platform) -> (TokenKeeper, Leading) {
    let options = KeeperOptions {
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        wait_timeout: Duration::from_secs(5),
    };
    let tasks = Tasks::new(TaskMetrics::unregistered());
    let (keeper, _events) = TokenKeeper::new(
        Arc::new(p.client.clone()),
        &p.settings.merchants,
        options,
        &tasks,
    );
    let leading = keeper.lead();
    (keeper, leading)
}

async fn ready(keeper: &TokenKeeper) {
    eventually("keeper ready", || async { keeper.is_ready() }).await;
}

/// The worker's compensation path: on 21327/21332 report the token and retry once more.
async fn finish(
    p: &Platform,
    keeper: &TokenKeeper,
    id: &str,
    first: Option<Arc<Token>>,
) -> CallOutcome {
    let mut token = match first {
        Some(token) => token,
        None => keeper.get(&appid()).await.unwrap(),
    };
    for _ in 0..3 {
        match p.client.finish(p.merchant(), &sub(id), &token).await {
            CallOutcome::TokenRejected { .. } => {
                keeper.invalidate(&appid(), &token).unwrap();
                token = keeper.get(&appid()).await.unwrap();
            }
            other => return other,
        }
    }
    panic!("token still rejected after 3 attempts");
}

/// Every caller takes the current token, then all call at once.
async fn concurrent_finishes(p: &Arc<Platform>, keeper: &TokenKeeper, ids: Vec<String>) {
    let barrier = Arc::new(Barrier::new(ids.len()));
    let mut tasks = Vec::new();
    for id in ids {
        let (p, keeper, barrier) = (p.clone(), keeper.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let token = keeper.get(&appid()).await.unwrap();
            barrier.wait().await;
            finish(&p, &keeper, &id, Some(token)).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), CallOutcome::Succeeded { code: 0 });
    }
}

#[tokio::test]
async fn expiry_seen_by_many_callers_causes_one_refresh() {
    let p = Arc::new(Platform::start(HOUR).await);
    let (keeper, _leading) = keeper(&p);
    ready(&keeper).await;
    let ids = p.orders(CALLERS, PAID).await;
    p.revoke(21327).await;
    concurrent_finishes(&p, &keeper, ids).await;
    assert_eq!(p.calls("retailerFinishSub", "21327").await, CALLERS as u64);
    assert_eq!(p.calls("retailerFinishSub", "0").await, CALLERS as u64);
    assert_eq!(p.tokens_issued().await, 2);
    assert_eq!(keeper.metrics().refreshes(&appid()), 2);
}

#[tokio::test]
async fn supersession_by_a_second_issue_causes_one_refresh() {
    let p = Arc::new(Platform::start(HOUR).await);
    let (keeper, _leading) = keeper(&p);
    ready(&keeper).await;
    let ids = p.orders(CALLERS, PAID).await;
    // Someone else obtains a token for the same merchant: the keeper's is now invalid.
    p.client.fetch_token(p.merchant()).await.unwrap();
    concurrent_finishes(&p, &keeper, ids).await;
    assert_eq!(p.calls("retailerFinishSub", "21332").await, CALLERS as u64);
    assert_eq!(p.tokens_issued().await, 3);
    assert_eq!(keeper.metrics().refreshes(&appid()), 2);
}

#[tokio::test]
async fn short_lived_tokens_are_replaced_before_they_expire() {
    let p = Platform::start(Duration::from_secs(2)).await;
    let (keeper, _leading) = keeper(&p);
    ready(&keeper).await;
    let ids = p.orders(500, PAID).await;
    // Keep calling across three token lives (refresh every 1.5 s), polling between calls.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for id in &ids {
        assert_eq!(
            finish(&p, &keeper, id, None).await,
            CallOutcome::Succeeded { code: 0 }
        );
        if keeper.metrics().refreshes(&appid()) >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no proactive refresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(keeper.metrics().refreshes(&appid()) >= 4);
    assert_eq!(
        p.calls("retailerFinishSub", "21327").await,
        0,
        "never expired"
    );
    assert_eq!(
        p.tokens_issued().await,
        keeper.metrics().refreshes(&appid())
    );
    assert!(keeper.is_ready());
}

#[tokio::test]
async fn failed_token_requests_are_retried() {
    let p = Platform::start(HOUR).await;
    p.faults(json!({"token_fail_next": 2})).await;
    let (keeper, _leading) = keeper(&p);
    ready(&keeper).await;
    assert_eq!(keeper.metrics().refresh_failures(&appid()), 2);
    assert_eq!(keeper.metrics().refreshes(&appid()), 1);
    assert_eq!(p.calls("authorize", "http_503").await, 2);
    assert_eq!(p.tokens_issued().await, 1);
    let registry = prometheus::Registry::new();
    keeper.metrics().register(&registry).unwrap();
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert!(
        names.contains(&"weibo_relay_token_age_seconds".to_owned()),
        "{names:?}"
    );
}
