//! A thousand merchants: onboarded through the real exchange, their refreshes spread over time
//! when they were onboarded together, and paced when all come due at once (after an outage).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use weibo_relay::provider::domain::MerchantStatus;
use weibo_relay::provider::onboarding::{AuthStatus, CallbackOutcome, CallbackParams};
use weibo_relay::provider::refresh::{RefreshPolicy, Refresher};

use crate::refresh::merchant;
use crate::support::{oauth_client, query_of, quick_policy, Rig};

const MERCHANTS: usize = 1000;
/// The pace of the herd sweep: refreshes started per second by one process.
const PER_SECOND: u32 = 200;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_thousand_merchants_refresh_spread_over_time_never_as_a_herd() {
    let rig = Rig::start().await;
    let started = Instant::now();
    let outcomes: Vec<CallbackOutcome> = stream::iter(0..MERCHANTS)
        .map(|i| {
            let rig = &rig;
            async move {
                let m = merchant(&format!("herd-{i:04}"));
                let link = rig
                    .onboarding
                    .create_link(&m, None, SystemTime::now())
                    .await
                    .unwrap();
                let id = link.url.path().rsplit('/').next().unwrap().to_owned();
                let authorize = rig
                    .onboarding
                    .begin(&id, SystemTime::now())
                    .await
                    .unwrap()
                    .unwrap();
                let code = rig
                    .sandbox
                    .oauth2()
                    .approve(&format!("{}", 3_000_000_000u64 + i as u64))
                    .unwrap();
                let params = CallbackParams {
                    code: Some(code),
                    state: query_of(authorize.as_str()).get("state").cloned(),
                    ..CallbackParams::default()
                };
                rig.onboarding
                    .callback(&params, SystemTime::now())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let onboarding_took = started.elapsed();
    assert!(outcomes.iter().all(|o| matches!(
        o,
        CallbackOutcome::Finished {
            status: AuthStatus::Success,
            ..
        }
    )));

    // Start-up against a store of a thousand: connect, migrations checked, every row read.
    let rss_before = rss_kib();
    let startup = Instant::now();
    let store = weibo_relay::provider::store::Store::connect(
        &secrecy::SecretString::from(rig.db.url.clone()),
        20,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let rows = store.merchants().await.unwrap();
    let startup_took = startup.elapsed();
    let rss_after = rss_kib();
    assert_eq!(rows.len(), MERCHANTS);
    assert!(rows.iter().all(|r| r.status == MerchantStatus::Authorized));

    // Onboarded within seconds of each other, due at 60-75 % of 2 h: spread over ~18 minutes.
    let mut by_minute: BTreeMap<u64, u64> = BTreeMap::new();
    for row in &rows {
        let after = row
            .next_refresh_at
            .unwrap()
            .duration_since(row.last_refresh_at.unwrap())
            .unwrap();
        assert!((4319..=5400).contains(&after.as_secs()), "{after:?}");
        *by_minute
            .entry(weibo_relay::clock::secs_of(row.next_refresh_at.unwrap()) / 60)
            .or_default() += 1;
    }
    let busiest = *by_minute.values().max().unwrap();
    let span = by_minute.keys().last().unwrap() - by_minute.keys().next().unwrap();
    assert!(span >= 16, "due times span {span} minutes");
    assert!(
        busiest <= 3 * MERCHANTS as u64 / span,
        "busiest minute {busiest} of {MERCHANTS} over {span}"
    );

    // All due at once (the refresher was down for hours): the sweep paces what it starts.
    sqlx::query("UPDATE provider_merchants SET next_refresh_at = now() - interval '1 second'")
        .execute(rig.db.store.pool())
        .await
        .unwrap();
    let policy = RefreshPolicy {
        per_second: PER_SECOND,
        ..quick_policy()
    };
    let refresher = Refresher::new(
        store.clone(),
        std::sync::Arc::new(oauth_client(&rig.sandbox, &rig.config)),
        rig.config.keys.clone(),
        policy,
    );
    let herd = Instant::now();
    let report = refresher.sweep(SystemTime::now()).await.unwrap();
    let herd_took = herd.elapsed();
    assert_eq!(report.refreshed, MERCHANTS as u64, "{report:?}");
    let timeline = rig.sandbox.oauth2().refresh_timeline();
    assert_eq!(timeline.len(), MERCHANTS);
    let first = timeline.iter().min().unwrap();
    let last = timeline.iter().max().unwrap();
    let busiest_second = timeline
        .iter()
        .map(|start| {
            timeline
                .iter()
                .filter(|t| **t >= *start && **t < start + 1000)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        last - first >= 4_500,
        "{MERCHANTS} refreshes within {} ms",
        last - first
    );
    assert!(
        busiest_second <= PER_SECOND as usize + 10,
        "{busiest_second} refreshes in one second"
    );
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(counters.refresh_presented_again, 0);
    println!(
        "1,000 merchants: onboarded in {onboarding_took:?}; start-up (connect, migrate, read all) {startup_took:?}, \
         RSS {rss_before} -> {rss_after} KiB; due times over {span} min, busiest minute {busiest}; \
         herd of {MERCHANTS} refreshed in {herd_took:?}, spread over {} ms, busiest second {busiest_second}",
        last - first
    );
    store.close().await;
    rig.stop().await;
}
