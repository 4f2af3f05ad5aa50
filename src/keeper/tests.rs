use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::supervise::TaskMetrics;

const APPID: &str = "100023";

/// Hands out `t1`, `t2`, ... living `expires_in`; fails while `fail_next` > 0.
struct Script {
    expires_in: Duration,
    fail_next: AtomicU32,
    calls: AtomicU64,
    issued: AtomicU64,
}

impl Script {
    fn new(expires_in: Duration) -> Arc<Self> {
        Arc::new(Self {
            expires_in,
            fail_next: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            issued: AtomicU64::new(0),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Script {
    fn fetch<'a>(&'a self, _: &'a Merchant) -> BoxFuture<'a, Result<Token, TokenError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(TokenError::Transport("scripted failure".into()));
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token::new(
                SecretString::from(format!("t{n}")),
                0,
                self.expires_in,
                Instant::now(),
            ))
        })
    }
}

fn merchants() -> Merchants {
    let toml = format!(
        r#"[[merchants]]
appid = "{APPID}"
sign_key = "k-0123456789abcdef"
client_id = "772915"
client_secret = "s-0123456789abcdef"
uid = "1"
"#
    );
    crate::settings::Settings::from_toml(&toml)
        .unwrap()
        .merchants
}

fn options() -> KeeperOptions {
    KeeperOptions {
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
        wait_timeout: Duration::from_secs(5),
    }
}

fn appid() -> AppId {
    AppId::parse(APPID).unwrap()
}

fn tasks() -> Tasks {
    Tasks::new(TaskMetrics::unregistered())
}

/// A keeper that leads from the start, as the only process: the keeper and what keeps it
/// leading.
fn start(script: &Arc<Script>) -> (TokenKeeper, Leading) {
    let (keeper, _events) = TokenKeeper::new(script.clone(), &merchants(), options(), &tasks());
    let leading = keeper.lead();
    (keeper, leading)
}

/// Lets the refresh task run after the clock moved, without letting time auto-advance.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Moves the clock in 100 ms steps, so a timer set by a task woken on the way still fires.
async fn advance(secs: f64) {
    let steps = (secs * 10.0).round() as u32;
    for _ in 0..steps {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
}

async fn current(keeper: &TokenKeeper) -> String {
    let token = keeper.get(&appid()).await.unwrap();
    token.secret().expose_secret().to_owned()
}

#[tokio::test(start_paused = true)]
async fn refreshes_at_three_quarters_of_the_life() {
    let script = Script::new(Duration::from_secs(100));
    let (keeper, _leading) = start(&script);
    assert_eq!(current(&keeper).await, "t1");
    advance(74.9).await;
    assert_eq!(script.calls(), 1);
    assert_eq!(current(&keeper).await, "t1");
    advance(0.1).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(current(&keeper).await, "t2");
    assert_eq!(keeper.metrics().refreshes(&appid()), 2);
    advance(75.0).await;
    assert_eq!(current(&keeper).await, "t3");
}

#[tokio::test(start_paused = true)]
async fn never_later_than_ninety_minutes() {
    // The platform says 4 h; the keeper does not believe more than 2 h, and refreshes by 1.5 h.
    let script = Script::new(Duration::from_secs(4 * 3600));
    let (keeper, _leading) = start(&script);
    assert_eq!(current(&keeper).await, "t1");
    advance(90.0 * 60.0 - 1.0).await;
    assert_eq!(script.calls(), 1);
    advance(1.0).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(current(&keeper).await, "t2");
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_backs_off_and_keeps_the_old_token() {
    let script = Script::new(Duration::from_secs(100));
    let (keeper, _leading) = start(&script);
    assert_eq!(current(&keeper).await, "t1");
    script.fail_next.store(3, Ordering::SeqCst);
    advance(75.0).await; // due: fails
    assert_eq!(script.calls(), 2);
    assert_eq!(current(&keeper).await, "t1", "old token still valid");
    advance(0.9).await;
    assert_eq!(script.calls(), 2);
    advance(0.1).await; // +1 s: fails
    assert_eq!(script.calls(), 3);
    advance(1.9).await;
    assert_eq!(script.calls(), 3);
    advance(0.1).await; // +2 s: fails
    assert_eq!(script.calls(), 4);
    advance(3.9).await;
    assert_eq!(script.calls(), 4);
    assert!(keeper.is_ready());
    advance(0.1).await; // +4 s: succeeds
    assert_eq!(script.calls(), 5);
    assert_eq!(current(&keeper).await, "t2");
    assert_eq!(keeper.metrics().refresh_failures(&appid()), 3);
    assert_eq!(keeper.metrics().refreshes(&appid()), 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped_and_expiry_makes_the_keeper_unready() {
    let script = Script::new(Duration::from_secs(100));
    script.fail_next.store(u32::MAX, Ordering::SeqCst);
    let (keeper, _leading) = start(&script);
    settle().await;
    assert!(!keeper.is_ready());
    // 1 + 2 + 4 + 8 + 8 + 8 s: the delay stops doubling at retry_max.
    advance(31.0).await;
    assert_eq!(script.calls(), 7);
    advance(7.9).await;
    assert_eq!(script.calls(), 7);
    advance(0.1).await;
    assert_eq!(script.calls(), 8);
    let err = keeper.get(&appid()).await.unwrap_err();
    assert!(matches!(err, KeeperError::Unavailable { .. }), "{err}");
    assert!(!keeper.is_ready());
}

#[tokio::test(start_paused = true)]
async fn concurrent_invalidations_cause_one_refresh() {
    let script = Script::new(Duration::from_secs(7200));
    let (keeper, _leading) = start(&script);
    let stale = keeper.get(&appid()).await.unwrap();
    let mut callers = Vec::new();
    for _ in 0..50 {
        let keeper = keeper.clone();
        let stale = stale.clone();
        callers.push(tokio::spawn(async move {
            keeper.invalidate(&appid(), &stale).unwrap();
            let fresh = keeper.get(&appid()).await.unwrap();
            fresh.secret().expose_secret().to_owned()
        }));
    }
    for caller in callers {
        assert_eq!(caller.await.unwrap(), "t2");
    }
    assert_eq!(script.calls(), 2);
    // A late report about the replaced token changes nothing.
    keeper.invalidate(&appid(), &stale).unwrap();
    settle().await;
    assert_eq!(script.calls(), 2);
    assert_eq!(current(&keeper).await, "t2");
}

#[tokio::test(start_paused = true)]
async fn readiness_unknown_merchants_and_metrics() {
    let script = Script::new(Duration::from_secs(100));
    let (keeper, _leading) = start(&script);
    settle().await;
    assert!(keeper.is_ready());
    assert!(matches!(
        keeper.get(&AppId::parse("999").unwrap()).await,
        Err(KeeperError::UnknownMerchant(_))
    ));
    advance(10.0).await;
    let registry = prometheus::Registry::new();
    keeper.metrics().register(&registry).unwrap();
    let text = {
        let mut out = Vec::new();
        use prometheus::Encoder;
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(
        text.contains(r#"weibo_relay_token_age_seconds{appid="100023"} 10"#),
        "{text}"
    );
    assert!(text.contains(r#"weibo_relay_token_refreshes_total{appid="100023"} 1"#));
    assert!(!format!("{keeper:?}").contains("t1"));
}

fn token(value: &str, expires_in: Duration) -> Token {
    Token::new(
        SecretString::from(value.to_owned()),
        0,
        expires_in,
        Instant::now(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_follower_uses_adopted_tokens_and_reports_rejections_with_their_generation() {
    let script = Script::new(Duration::from_secs(7200));
    let (keeper, mut events) = TokenKeeper::new(script.clone(), &merchants(), options(), &tasks());
    assert!(!keeper.is_leading());
    assert!(keeper.adopt(&appid(), token("a1", Duration::from_secs(7200)), 100));
    assert!(
        !keeper.adopt(&appid(), token("old", Duration::from_secs(7200)), 99),
        "older"
    );
    assert!(
        !keeper.adopt(&appid(), token("same", Duration::from_secs(7200)), 100),
        "same"
    );
    let held = keeper.get(&appid()).await.unwrap();
    assert_eq!(held.secret().expose_secret(), "a1");
    // Many rejections of that token in this process: one report, with its generation.
    for _ in 0..20 {
        keeper.invalidate(&appid(), &held).unwrap();
    }
    let rejected = KeeperEvent::Rejected {
        appid: appid(),
        generation: 100,
    };
    assert_eq!(events.recv().await, Some(rejected));
    assert!(events.try_recv().is_err());
    // Until the leader's next token arrives, callers wait, and the leader is asked once
    // however many wait, until the broker side took the request.
    let wait = || {
        let keeper = keeper.clone();
        tokio::spawn(async move {
            keeper
                .get(&appid())
                .await
                .map(|t| t.secret().expose_secret().to_owned())
        })
    };
    let waiting = [wait(), wait()];
    settle().await;
    assert!(waiting.iter().all(|w| !w.is_finished()));
    assert_eq!(events.try_recv().ok(), Some(KeeperEvent::Wanting));
    assert!(events.try_recv().is_err(), "one request for both");
    keeper.wanting_heard();
    let third = wait();
    settle().await;
    assert_eq!(events.try_recv().ok(), Some(KeeperEvent::Wanting));
    assert!(keeper.adopt(&appid(), token("a2", Duration::from_secs(7200)), 101));
    for waiting in waiting.into_iter().chain([third]) {
        assert_eq!(waiting.await.unwrap().unwrap(), "a2");
    }
    // A follower never asks the platform.
    assert_eq!(script.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_keeps_an_adopted_token_until_it_is_due_and_refreshes_each_generation_once() {
    let script = Script::new(Duration::from_secs(100));
    let (keeper, mut events) = TokenKeeper::new(script.clone(), &merchants(), options(), &tasks());
    // Adopted from the previous leader, 100 s life, obtained now.
    keeper.adopt(&appid(), token("inherited", Duration::from_secs(100)), 500);
    let lead = keeper.lead();
    settle().await;
    assert!(keeper.is_leading());
    assert_eq!(
        script.calls(),
        0,
        "a valid token is not replaced on taking over"
    );
    assert_eq!(current(&keeper).await, "inherited");
    // Reports about an older generation change nothing; the current one, once.
    assert!(!keeper.invalidate_generation(&appid(), 499));
    assert!(keeper.invalidate_generation(&appid(), 500));
    assert!(!keeper.invalidate_generation(&appid(), 500));
    settle().await;
    assert_eq!(script.calls(), 1);
    assert_eq!(current(&keeper).await, "t1");
    assert_eq!(events.recv().await, Some(KeeperEvent::Obtained(appid())));
    let (_, generation) = keeper.current(&appid()).unwrap();
    assert!(generation > 500, "{generation}");
    // Leading stops at once when the lead is dropped: no refresh when the token falls due.
    drop(lead);
    assert!(!keeper.is_leading());
    advance(80.0).await;
    assert_eq!(script.calls(), 1);
}
