//! The settings a stage runs on: names unique to one run, test and demo merchants, and the
//! configuration file a relay process of the stage reads.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::STAGE_APPID;
use crate::settings::{Merchant, Merchants, Settings};

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

/// A merchant from plain values (test and demo credentials only).
pub fn merchant(
    appid: &str,
    sign_key: &str,
    client_id: &str,
    client_secret: &str,
    uid: &str,
) -> Merchant {
    Merchant {
        appid: appid.into(),
        sign_key: SecretString::from(sign_key.to_owned()),
        client_id: client_id.into(),
        client_secret: SecretString::from(client_secret.to_owned()),
        uid: uid.into(),
    }
}

/// Everything `settings` holds as a configuration file, secrets included: for starting the
/// relay as a process with the settings a harness built (tests and tools only; production
/// never writes its secrets anywhere).
pub fn to_toml(settings: &Settings) -> String {
    use std::fmt::Write;
    let q = |s: &str| toml_string(s);
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let (h, p, a, w) = (
        &settings.http,
        &settings.push,
        &settings.amqp,
        &settings.weibo,
    );
    let mut out = String::new();
    let _ = writeln!(out, "[http]\nbind = {}", q(&h.bind.to_string()));
    if let Some(admin) = h.admin_bind {
        let _ = writeln!(out, "admin_bind = {}", q(&admin.to_string()));
    }
    let _ = writeln!(
        out,
        "max_body_bytes = {}\nbody_timeout_ms = {}\nmax_connections = {}\nshutdown_timeout_secs = {}\nworkers = {}\n",
        h.max_body_bytes,
        h.body_timeout_ms,
        h.max_connections,
        h.shutdown_timeout_secs,
        h.workers
    );
    let _ = writeln!(
        out,
        "[push]\npath = {}\nmax_skew_secs = {}\ndedup_capacity = {}\nsuccess_body = {}\nsuccess_content_type = {}\n",
        q(&p.path),
        p.max_skew_secs,
        p.dedup_capacity,
        q(&p.success_body),
        q(&p.success_content_type)
    );
    let _ = writeln!(out, "[amqp]\nurl = {}", q(a.url.expose_secret()));
    if !a.urls.is_empty() {
        let urls: Vec<String> = a.urls.iter().map(|u| q(u.expose_secret())).collect();
        let _ = writeln!(out, "urls = [{}]", urls.join(", "));
    }
    for (key, path) in [
        ("tls_ca_file", &a.tls_ca_file),
        ("tls_cert_file", &a.tls_cert_file),
        ("tls_key_file", &a.tls_key_file),
    ] {
        if let Some(path) = path {
            let _ = writeln!(out, "{key} = {}", q(&path.to_string_lossy()));
        }
    }
    let _ = writeln!(
        out,
        "events_exchange = {}\nevents_queue = {}\nfulfilment_queue = {}\nconfirm_timeout_ms = {}\nreconnect_min_ms = {}\nreconnect_max_ms = {}\nheartbeat_secs = {}\n",
        q(&a.events_exchange),
        q(&a.events_queue),
        q(&a.fulfilment_queue),
        a.confirm_timeout_ms,
        a.reconnect_min_ms,
        a.reconnect_max_ms,
        a.heartbeat_secs
    );
    let _ = writeln!(
        out,
        "[weibo]\napi_base = {}\noauth_base = {}\ntimeout_ms = {}\nmax_attempts = {}\nretry_base_ms = {}\nretry_max_ms = {}\nrate_limit_per_sec = {}\nallow_insecure_http = {}\n",
        q(&w.api_base),
        q(&w.oauth_base),
        w.timeout_ms,
        w.max_attempts,
        w.retry_base_ms,
        w.retry_max_ms,
        w.rate_limit_per_sec,
        w.allow_insecure_http
    );
    let c = &w.codes;
    let _ = writeln!(
        out,
        "[weibo.codes]\ntoken_rejected = [{}]\ntransient = [{}]\nalready_finished = [{}]\nalready_closed = [{}]\n",
        list(&c.token_rejected),
        list(&c.transient),
        list(&c.already_finished),
        list(&c.already_closed)
    );
    let (wk, r) = (&settings.worker, &settings.reconcile);
    let _ = writeln!(
        out,
        "[worker]\nprefetch = {}\nconcurrency = {}\ntoken_wait_ms = {}\n",
        wk.prefetch, wk.concurrency, wk.token_wait_ms
    );
    let _ = writeln!(
        out,
        "[reconcile]\nenabled = {}\ninterval_secs = {}\nlookback_secs = {}\nsettle_secs = {}\n",
        r.enabled, r.interval_secs, r.lookback_secs, r.settle_secs
    );
    let _ = writeln!(
        out,
        "[event_log]\nmax_age = {}\n",
        q(&settings.event_log.max_age)
    );
    for m in settings.merchants.iter() {
        let _ = writeln!(
            out,
            "[[merchants]]\nappid = {}\nsign_key = {}\nclient_id = {}\nclient_secret = {}\nuid = {}\n",
            q(&m.appid),
            q(m.sign_key.expose_secret()),
            q(&m.client_id),
            q(m.client_secret.expose_secret()),
            q(&m.uid)
        );
    }
    out
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

/// A TOML basic string: quoted, with quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `base` isolated, with one merchant the sandbox knows (fresh credentials), so a run
/// touches no real merchant.
pub(super) fn staged(settings: Settings, prefix: &str) -> Settings {
    let mut settings = isolated(settings, prefix);
    let run = &settings.amqp.events_queue[prefix.len() + 1..][..8].to_owned();
    let secret = |s: &str| SecretString::from(format!("{prefix}-{s}-{run}"));
    settings.merchants = Merchants::new(vec![Merchant {
        appid: STAGE_APPID.into(),
        sign_key: secret("sign-key"),
        client_id: "772915".into(),
        client_secret: secret("client-secret"),
        uid: "1404376560".into(),
    }]);
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
        let read = Settings::from_toml(toml).unwrap();
        let written = to_toml(&read);
        let again = Settings::from_toml(&written).unwrap();
        assert_eq!(format!("{read:?}"), format!("{again:?}"), "{written}");
        let m = again.merchants.get("100023").unwrap();
        assert_eq!(m.sign_key.expose_secret(), "sign \"key\" with \\ and more");
        assert_eq!(
            again.amqp.urls[1].expose_secret(),
            "amqp://relay:pa55-word-0123456789@rmq-1:5672/%2f"
        );
        assert_eq!(again.push.success_body, "ok \"quoted\" \\ back");
    }
}
