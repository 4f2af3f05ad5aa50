//! `weibo-relay check` in provider mode: the store's line, read only, with the merchants by
//! status, and an unreachable store said in words without its password.

use std::process::Command;

use secrecy::SecretString;
use weibo_relay::provider::settings::Provider;
use weibo_relay::settings::Settings;
use weibo_relay_tooling::stage::{self, ConfigFile};

use crate::relay::{provider_settings, stdout};
use crate::support::TestDb;

const RELAY: &str = env!("CARGO_BIN_EXE_weibo-relay");

fn config(db: &TestDb, store_url: Option<&str>) -> ConfigFile {
    let mut written = provider_settings("http://127.0.0.1:9", db);
    if let Some(url) = store_url {
        written.store_url = SecretString::from(url.to_owned());
    }
    let mut settings =
        Settings::load(None, std::iter::empty::<(String, String)>()).expect("the defaults");
    settings.provider = Some(Provider::try_from(written).expect("provider settings"));
    ConfigFile::with_text(&stage::to_toml(&settings)).expect("a file")
}

fn run(args: &[&str], file: &ConfigFile) -> String {
    let out = Command::new(RELAY)
        .args(args)
        .arg("--config")
        .arg(file.path())
        .output()
        .expect("the binary runs");
    stdout(&out)
}

fn store_line(report: &str) -> String {
    report
        .lines()
        .find(|l| l.contains("provider.store_url"))
        .unwrap_or_else(|| panic!("no store line in {report}"))
        .to_owned()
}

#[tokio::test]
async fn check_reports_the_store_by_status_and_an_unreachable_one_without_its_password() {
    let db = TestDb::new().await;
    let file = config(&db, None);
    let report = run(&["check"], &file);
    assert!(
        report.contains("ok   configuration: loaded, provider mode (appid 100023)"),
        "{report}"
    );
    assert_eq!(
        store_line(&report),
        "ok   provider.store_url: connected, no merchant yet (weibo-relay merchants link --ref REF)"
    );
    run(&["merchants", "link", "--ref", "shop-1"], &file);
    assert_eq!(
        store_line(&run(&["check"], &file)),
        "ok   provider.store_url: connected, 1 merchant(s): pending 1"
    );

    let refused = config(
        &db,
        Some("postgres://relay:hunter2-secret@127.0.0.1:1/relay"),
    );
    let report = run(&["check"], &refused);
    let line = store_line(&report);
    assert!(
        line.starts_with("FAIL provider.store_url: cannot connect to PostgreSQL: ")
            && line.contains("Connection refused"),
        "{line}"
    );
    assert!(!report.contains("hunter2"), "{report}");
}
