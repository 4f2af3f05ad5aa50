//! A node requiring mutual TLS with a private CA.

use super::support::*;
use crate::support::*;
use std::process::Command;
use weibo_relay::settings::Settings;
use weibo_relay::settings::{Certificates, PrivateKey};

#[tokio::test]
async fn a_broker_requiring_mutual_tls_with_a_private_ca_is_reached_with_the_right_files_only() {
    let port = base_port(10);
    let nodes = Nodes::start("start-tls", port);
    let url = nodes.get("tls");
    let (ca, cert, key) = (
        nodes.get("tls_ca"),
        nodes.get("tls_client_cert"),
        nodes.get("tls_client_key"),
    );
    let (other_ca, other_cert, other_key) = (
        nodes.get("tls_other_ca"),
        nodes.get("tls_other_client_cert"),
        nodes.get("tls_other_client_key"),
    );
    // The relay's settings for `url` with a CA file and, maybe, a client certificate and key.
    let files = |url: &str, ca: &str, cert: Option<&str>, key: Option<&str>| {
        let mut settings = test_settings(url);
        settings.amqp.tls_ca_file = Some(Certificates::read(ca).unwrap());
        settings.amqp.tls_cert_file = cert.map(|c| Certificates::read(c).unwrap());
        settings.amqp.tls_key_file = key.map(|k| PrivateKey::read(k).unwrap());
        settings
    };
    let good = files(url, ca, Some(cert), Some(key));
    let (ok, lines) = receiver_over_tls(&good).await;
    assert!(
        ok,
        "the right CA and client certificate:\n{}",
        lines.join("\n")
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("broker connected") && l.contains("amqps://")));
    // The certificate as the login, no password in the URL.
    let external = files(nodes.get("tls_external"), ca, Some(cert), Some(key));
    let (ok, lines) = receiver_over_tls(&external).await;
    assert!(ok, "EXTERNAL login:\n{}", lines.join("\n"));
    // The operator tools use the same files.
    let dir = std::env::temp_dir().join(format!("wr-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay.toml");
    std::fs::write(&config, relay_toml(&good)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    std::fs::write(&config, relay_toml(&files(url, ca, None, None))).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["dlq", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dlq list over TLS: {stderr}");
    assert!(stderr.starts_with("no dead letters in "), "{stderr}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the broker: amqps://"),
        "{stderr}"
    );
    for (case, tls) in [
        ("no client certificate", files(url, ca, None, None)),
        (
            "a certificate from another CA",
            files(url, ca, Some(other_cert), Some(other_key)),
        ),
        (
            "the broker's CA not trusted",
            files(url, other_ca, Some(cert), Some(key)),
        ),
    ] {
        let (ok, lines) = receiver_over_tls(&tls).await;
        assert!(!ok, "{case}: connected");
        assert!(
            lines.iter().any(|l| l.contains("broker connection failed")),
            "{case}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.iter().all(|l| !l.contains("BEGIN")),
            "{case}: key material logged"
        );
    }
    // Files that cannot work stop the start, naming the key.
    let mut cert_only = files(url, ca, Some(cert), None);
    cert_only.amqp.tls_ca_file = None;
    for (toml, expected) in [
        (
            relay_toml(&files(url, ca, Some(cert), Some(other_key))),
            "invalid configuration: amqp.tls_key_file: ",
        ),
        (
            relay_toml(&files(url, ca, None, None)).replace(ca, "/nonexistent/ca.pem"),
            "invalid configuration: amqp.tls_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            relay_toml(&cert_only),
            "invalid configuration: amqp.tls_key_file: is required with amqp.tls_cert_file",
        ),
    ] {
        // As the relay reads its file at start.
        let err = Settings::from_toml(&toml).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
        assert!(!err.contains("BEGIN"), "{err}");
    }
}
