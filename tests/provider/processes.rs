//! Refreshes in real separate processes (this test binary started again as a child, each with
//! its own connections): several processes refreshing one merchant at the same moment, and a
//! process killed between the platform's answer and the store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use weibo_relay::provider::domain::MerchantStatus;
use weibo_relay::provider::oauth::{Grant, HttpOAuthClient, OAuthClient, OAuthError, TokenInfo};
use weibo_relay::provider::refresh::{RefreshOutcome, Refresher, Why};
use weibo_relay::provider::store::Store;
use weibo_relay_tooling::sandbox::OAuth2Faults;

use crate::flow::{events, onboard};
use crate::refresh::{make_due, merchant};
use crate::support::{quick_policy, ring, Rig, CLIENT_ID, CLIENT_SECRET};

/// Presents the refresh token, and once Weibo has answered with new tokens dies on the spot
/// (SIGABRT: no destructor, no commit), as a process killed in that window would.
struct CrashAfterAnswer(HttpOAuthClient);

impl OAuthClient for CrashAfterAnswer {
    fn exchange_code<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Grant, OAuthError>> {
        self.0.exchange_code(code)
    }
    fn refresh<'a>(&'a self, token: &'a SecretString) -> BoxFuture<'a, Result<Grant, OAuthError>> {
        Box::pin(async move {
            let answer = self.0.refresh(token).await;
            if answer.is_ok() {
                println!("ANSWERED");
                std::process::abort();
            }
            answer
        })
    }
    fn token_info<'a>(
        &'a self,
        token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenInfo, OAuthError>> {
        self.0.token_info(token)
    }
    fn revoke<'a>(&'a self, token: &'a SecretString) -> BoxFuture<'a, Result<(), OAuthError>> {
        self.0.revoke(token)
    }
}

/// The child: does nothing unless started by the tests below with `WR_PROVIDER_CHILD`.
#[tokio::test]
#[ignore = "a child process of the process tests"]
async fn child_process() {
    let Ok(mode) = std::env::var("WR_PROVIDER_CHILD") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} set by the parent"));
    let store = Store::connect(&SecretString::from(var("WR_DB")), 2)
        .await
        .unwrap();
    let inner = HttpOAuthClient::new(
        &var("WR_OAUTH"),
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        &var("WR_REDIRECT"),
        Duration::from_secs(10),
    )
    .unwrap();
    let client: Arc<dyn OAuthClient> = match mode.as_str() {
        "crash_after_answer" => Arc::new(CrashAfterAnswer(inner)),
        _ => Arc::new(inner),
    };
    let keys: Vec<_> = var("WR_KEYS")
        .split(',')
        .map(|pair| {
            let (id, key) = pair.split_once('=').unwrap();
            weibo_relay::provider::settings::StoreKey {
                id: id.into(),
                key: SecretString::from(key.to_owned()),
            }
        })
        .collect();
    let refresher = Refresher::new(store, client, ring(&keys), quick_policy());
    println!("READY");
    let go = std::path::PathBuf::from(var("WR_GO"));
    while !go.exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let outcome = refresher
        .refresh(&merchant(&var("WR_REF")), Why::Due, SystemTime::now())
        .await;
    println!("OUTCOME {outcome:?}");
}

/// A child running `mode` for `merchant`, its stdout lines on a channel.
fn spawn_child(
    rig: &Rig,
    mode: &str,
    merchant: &str,
    go: &std::path::Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let keys: Vec<String> = rig
        .settings
        .store_keys
        .iter()
        .map(|k| format!("{}={}", k.id, k.key.expose_secret()))
        .collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "processes::child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WR_PROVIDER_CHILD", mode)
        .env("WR_DB", &rig.db.url)
        .env("WR_OAUTH", rig.sandbox.base_url())
        .env("WR_REDIRECT", rig.config.redirect_uri.as_str())
        .env("WR_KEYS", keys.join(","))
        .env("WR_REF", merchant)
        .env("WR_GO", go)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for a line holding `marker` (libtest's "test .. ... " may stand before it); returns
/// the line from the marker on.
fn await_line(
    lines: &std::sync::mpsc::Receiver<String>,
    marker: &str,
    limit: Duration,
) -> Option<String> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => {
                return line.find(marker).map(|at| line[at..].to_owned());
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Kills children still running when a test fails half-way.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn four_processes_refreshing_one_merchant_at_once_present_its_token_once() {
    let rig = Rig::start().await;
    onboard(&rig, "proc-race", "1404376800").await;
    rig.sandbox.oauth2().set_faults(OAuth2Faults {
        delay_ms: 300,
        ..OAuth2Faults::default()
    });
    make_due(&rig, "proc-race").await;
    let dir = std::env::temp_dir().join(format!("wr-go-{}", uuid::Uuid::new_v4().simple()));
    let mut children = Children(Vec::new());
    let mut outputs = Vec::new();
    for _ in 0..4 {
        let (child, lines) = spawn_child(&rig, "refresh", "proc-race", &dir);
        children.0.push(child);
        assert!(
            await_line(&lines, "READY", Duration::from_secs(30)).is_some(),
            "a child came up"
        );
        outputs.push(lines);
    }
    std::fs::write(&dir, b"go").unwrap();
    let outcomes: Vec<String> = tokio::task::spawn_blocking(move || {
        outputs
            .iter()
            .map(|lines| await_line(lines, "OUTCOME", Duration::from_secs(30)).unwrap_or_default())
            .collect()
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&dir);
    let refreshed = outcomes
        .iter()
        .filter(|o| o.contains("Ok(Refreshed"))
        .count();
    let done = outcomes
        .iter()
        .filter(|o| o.contains("Ok(AlreadyDone)"))
        .count();
    assert_eq!((refreshed, done), (1, 3), "{outcomes:?}");
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(
        (counters.refresh_presented, counters.refresh_presented_again),
        (1, 0)
    );
    assert_eq!(
        rig.db
            .store
            .merchant(&merchant("proc-race"))
            .await
            .unwrap()
            .unwrap()
            .generation,
        2
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_process_killed_between_the_answer_and_the_store_loses_that_answer_only() {
    let rig = Rig::start().await;
    onboard(&rig, "crash", "1404376801").await;
    onboard(&rig, "bystander", "1404376802").await;
    make_due(&rig, "crash").await;
    let old_refresh = crate::refresh::refresh_token_of(&rig, "crash")
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("wr-go-{}", uuid::Uuid::new_v4().simple()));
    let (child, lines) = spawn_child(&rig, "crash_after_answer", "crash", &dir);
    let mut children = Children(vec![child]);
    assert!(await_line(&lines, "READY", Duration::from_secs(30)).is_some());
    std::fs::write(&dir, b"go").unwrap();
    let answered = tokio::task::spawn_blocking(move || {
        await_line(&lines, "ANSWERED", Duration::from_secs(30))
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&dir);
    assert!(answered.is_some(), "the child got Weibo's answer");
    let status = children.0[0].wait().unwrap();
    assert!(!status.success(), "the child died: {status:?}");
    // Weibo rotated; the store did not: the row still holds the old refresh token, unlocked.
    assert_eq!(rig.sandbox.oauth2().counters().refreshed, 1);
    let row = rig
        .db
        .store
        .merchant(&merchant("crash"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.generation, row.status),
        (1, MerchantStatus::Authorized)
    );
    assert_eq!(
        crate::refresh::refresh_token_of(&rig, "crash")
            .await
            .as_deref(),
        Some(old_refresh.as_str())
    );
    // What is lost is that answer: the old token is dead at Weibo, so the next refresh (the
    // only way to find out) is refused and the merchant must authorize again, published once.
    let outcome = rig
        .refresher
        .refresh(&merchant("crash"), Why::Due, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::NeedsReauthorization);
    let counters = rig.sandbox.oauth2().counters();
    assert_eq!(
        (counters.refresh_presented, counters.refresh_presented_again),
        (2, 1)
    );
    let kinds: Vec<_> = events(&rig, "crash")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        kinds,
        ["merchant.authorized", "merchant.needs_reauthorization"]
    );
    // Nothing else is touched.
    let other = rig
        .db
        .store
        .merchant(&merchant("bystander"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (other.generation, other.status),
        (1, MerchantStatus::Authorized)
    );
    rig.stop().await;
}
