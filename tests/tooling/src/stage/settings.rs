//! The settings a stage runs on: names unique to one run, test and demo merchants, and the
//! configuration file a relay process of the stage reads.

use std::path::{Path, PathBuf};

use super::STAGE_APPID;
use weibo_relay::settings::{Merchant, Merchants, Settings};

/// `settings` with exchange and queue names unique to one run (`<prefix>.<run>.*`) and a
/// loopback listener on a free port: what the demo, the benches and every test start from,
/// so runs side by side never share a queue.
pub fn isolated(mut settings: Settings, prefix: &str) -> Settings {
    let run = uuid::Uuid::new_v4().simple().to_string();
    settings.http.bind = ([127, 0, 0, 1], 0).into();
    settings.amqp.events_exchange = format!("{prefix}.{run}.events");
    settings.amqp.events_queue = format!("{prefix}.{run}.orders");
    settings.amqp.fulfilment_queue = format!("{prefix}.{run}.fulfilment");
    settings
}

/// A merchant from plain values (test and demo credentials only), checked as a
/// configuration file's would be.
///
/// # Panics
/// On values the settings refuse (a short secret, an id that is not digits): a test's or a
/// tool's own mistake, never input.
pub fn merchant(
    appid: &str,
    sign_key: &str,
    client_id: &str,
    client_secret: &str,
    uid: &str,
) -> Merchant {
    let fields = serde_json::json!({
        "appid": appid,
        "sign_key": sign_key,
        "client_id": client_id,
        "client_secret": client_secret,
        "uid": uid,
    });
    serde_json::from_value(fields).unwrap_or_else(|e| panic!("merchant {appid}: {e}"))
}

/// Everything `settings` holds as a configuration file, secrets included: for starting the
/// relay as a process with the settings a harness built (tests and tools only; production
/// never writes its secrets anywhere).
pub fn to_toml(settings: &Settings) -> String {
    toml::to_string(settings).expect("settings are a TOML document")
}

/// A configuration file in a directory of its own, removed when dropped: how a relay process
/// or an operator command run by the harness is given its settings.
pub struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    /// `settings` as a file ([`to_toml`]).
    pub fn of(settings: &Settings) -> std::io::Result<Self> {
        Self::with_text(&to_toml(settings))
    }

    /// A file holding `toml` as it is (a broken one, for a test of the parser, say).
    pub fn with_text(toml: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("weibo-relay-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("relay.toml");
        std::fs::write(&path, toml)?;
        Ok(Self { dir, path })
    }

    /// Where it is, for `--config`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `base` isolated, with one merchant the sandbox knows (fresh credentials), so a run
/// touches no real merchant.
pub(super) fn staged(settings: Settings, prefix: &str) -> Settings {
    let mut settings = isolated(settings, prefix);
    let run = &settings.amqp.events_queue[prefix.len() + 1..][..8].to_owned();
    let secret = |s: &str| format!("{prefix}-{s}-{run}");
    settings.merchants = Merchants::new(vec![merchant(
        STAGE_APPID,
        &secret("sign-key"),
        "772915",
        &secret("client-secret"),
        "1404376560",
    )]);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_toml_writes_every_setting_back_as_it_was_read() {
        let toml = r#"
[http]
bind = "127.0.0.1:0"
admin_bind = "127.0.0.1:9191"
max_body_bytes = 1234
workers = 3
[push]
max_skew_secs = 77
success_body = "ok \"quoted\" \\ back"
[amqp]
url = "amqp://relay:pa55-word-0123456789@rmq-0:5672/%2f"
urls = ["amqp://relay:pa55-word-0123456789@rmq-0:5672/%2f", "amqp://relay:pa55-word-0123456789@rmq-1:5672/%2f"]
heartbeat_secs = 9
[weibo]
api_base = "http://127.0.0.1:1/2/proxy/eshop/open"
oauth_base = "http://127.0.0.1:1"
max_attempts = 3
[weibo.codes]
transient = [10001, 99999]
[reconcile]
enabled = false
[event_log]
max_age = "1h"
[[merchants]]
appid = "100023"
sign_key = "sign \"key\" with \\ and more"
client_id = "772915"
client_secret = "client-secret-0123456789"
uid = "1404376560"
"#;
        use secrecy::ExposeSecret;
        let read = Settings::from_toml(toml).unwrap();
        let written = to_toml(&read);
        let again = Settings::from_toml(&written).unwrap();
        // Every value, secrets included (equality compares them; Debug would hide them).
        assert_eq!(read, again, "{written}");
        let m = again.merchants.get("100023").unwrap();
        assert_eq!(
            m.sign_key().expose_secret(),
            "sign \"key\" with \\ and more"
        );
        assert_eq!(again.push.success_body, "ok \"quoted\" \\ back");
        assert_eq!(again.http.admin_bind, Some(([127, 0, 0, 1], 9191).into()));
        // A wrong password or secret in what was written would not pass for the same.
        for (from, to) in [
            ("pa55-word-0123456789@rmq-1", "other-word-0123456789@rmq-1"),
            ("client-secret-0123456789", "client-secret-9876543210"),
        ] {
            let altered = Settings::from_toml(&written.replace(from, to)).unwrap();
            assert_ne!(read, altered, "{to}");
        }
    }
}
