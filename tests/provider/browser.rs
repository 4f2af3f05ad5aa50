//! The connect pages in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` over WebDriver, clicking link -> the sandbox's consent page -> callback ->
//! the provider's return page. Each page is photographed into
//! `target/provider-screenshots/` (test artefacts; `docs/provider-pages.png` is one of them).
//! Chromium enforces the pages' Content-Security-Policy, `form-action` on the redirect after
//! the button's post included: a policy that forgot Weibo's origin fails here.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::{Client, ClientBuilder, Locator};
use weibo_relay::provider::domain::MerchantStatus;

use crate::flow::events;
use crate::refresh::merchant;
use crate::support::Rig;

/// A chromedriver of the test's own and a Chromium session on it; both end when dropped.
struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let port = weibo_relay_tooling::stage::spare_port();
        // A process group of its own: Chromium's processes join it, so dropping this ends them
        // all even when the test failed before closing the session.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (Debian chromium-driver: bash .ci/ensure-provider-tools.sh)",
            );
        let profile =
            std::env::temp_dir().join(format!("wr-chromium-{}", uuid::Uuid::new_v4().simple()));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-crash-reporter", "--disable-breakpad",
                    "--window-size=900,700", format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let mut browser = Self {
            client: None,
            driver,
            profile,
        };
        let started = Instant::now();
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(capabilities.as_object().cloned().unwrap());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no Chromium session: {e}"),
            }
        };
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Saves the page as `target/provider-screenshots/<name>.png`.
    async fn photograph(&self, name: &str) {
        let png = self.client().screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/provider-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text_of(&self, css: &str) -> String {
        self.client()
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.client()
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn stop(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Opens a new link for `shop` and walks to Weibo's consent page, photographing both pages.
async fn to_consent(
    rig: &Rig,
    browser: &Browser,
    shop: &str,
    return_url: Option<&str>,
    prefix: &str,
) {
    let link = rig
        .onboarding
        .create_link(&merchant(shop), return_url, SystemTime::now())
        .await
        .unwrap();
    browser.client().goto(link.url.as_str()).await.unwrap();
    let heading = browser.text_of("h1").await;
    assert_eq!(heading, "Connect your Weibo shop to Acme Fulfilment");
    browser.photograph(&format!("{prefix}-1-connect")).await;
    browser.click("#connect").await;
    browser.text_of("#authorize").await;
    let at = browser.client().current_url().await.unwrap();
    assert_eq!(at.origin().ascii_serialization(), rig.sandbox.base_url());
    browser.photograph(&format!("{prefix}-2-consent")).await;
}

#[tokio::test]
async fn a_merchant_connects_and_returns_to_the_back_office_in_a_real_browser() {
    let rig = Rig::start().await;
    let browser = Browser::start().await;
    to_consent(
        &rig,
        &browser,
        "browser-yes",
        Some(&format!("{}/done", rig.backoffice)),
        "consent",
    )
    .await;
    let uid = browser.client().find(Locator::Css("#uid")).await.unwrap();
    uid.clear().await.unwrap();
    uid.send_keys("1404376900").await.unwrap();
    browser.click("#authorize").await;
    assert_eq!(browser.text_of("#auth_status").await, "SUCCESS");
    assert_eq!(browser.text_of("#merchant_ref").await, "browser-yes");
    assert_eq!(browser.text_of("#auth_fail_reason").await, "");
    browser.photograph("consent-3-back-office").await;
    let row = rig
        .db
        .store
        .merchant(&merchant("browser-yes"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Authorized);
    assert_eq!(row.uid.unwrap().as_str(), "1404376900");
    assert_eq!(events(&rig, "browser-yes").await.len(), 1);
    browser.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn a_merchant_denies_and_the_back_office_is_told_in_a_real_browser() {
    let rig = Rig::start().await;
    let browser = Browser::start().await;
    to_consent(
        &rig,
        &browser,
        "browser-no",
        Some(&format!("{}/done", rig.backoffice)),
        "denial",
    )
    .await;
    browser.click("#deny").await;
    assert_eq!(browser.text_of("#auth_status").await, "FAILED");
    assert_eq!(browser.text_of("#auth_fail_reason").await, "access_denied");
    browser.photograph("denial-3-back-office").await;
    let row = rig
        .db
        .store
        .merchant(&merchant("browser-no"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, MerchantStatus::Pending);
    browser.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn without_a_return_url_the_result_page_says_it_and_a_reused_link_is_refused() {
    let rig = Rig::start().await;
    let browser = Browser::start().await;
    to_consent(&rig, &browser, "browser-page", None, "result").await;
    browser.click("#authorize").await;
    assert_eq!(browser.text_of("#result").await, "Authorized");
    browser.photograph("result-3-authorized").await;
    // Back to the link: used.
    browser.client().back().await.unwrap();
    browser.client().back().await.unwrap();
    let link_page = browser.client().current_url().await.unwrap();
    assert!(link_page.path().starts_with("/connect/"), "{link_page}");
    browser.client().refresh().await.unwrap();
    assert_eq!(browser.text_of("#result").await, "Link already used");
    browser.photograph("result-4-link-used").await;
    browser.stop().await;
    rig.stop().await;
}
