//! `[amqp]`: the broker nodes, their credentials checked, and the TLS files read.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{is_placeholder, AmqpSettings, ConfigError};

/// The largest TLS file read (a CA bundle, a certificate chain, a key): the system's whole CA
/// store is about 200 KiB, and a path such as `/dev/zero` must not be read without end.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// One broker node: its address, and how logs and errors show it (password hidden).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The node's address, heartbeat set.
    pub uri: lapin::uri::AMQPUri,
    /// The URL with its password replaced.
    pub shown: String,
}

impl AmqpSettings {
    /// Deadline for a publisher confirm.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }

    /// The URL with its password replaced, fit for logs.
    pub fn redacted_url(&self) -> String {
        redacted(self.url.expose_secret())
    }

    /// The nodes to connect to (`urls`, or `url` alone), each with `heartbeat_secs` unless its
    /// URL sets its own, and how it is shown in logs (password hidden).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        let (key, urls) = if self.urls.is_empty() {
            ("amqp.url", std::slice::from_ref(&self.url))
        } else {
            ("amqp.urls", self.urls.as_slice())
        };
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if self.urls.is_empty() {
                    key.to_owned()
                } else {
                    format!("{key}[{i}]")
                };
                let text = url.expose_secret();
                // The parser's message could repeat the URL, password and all: say only that.
                let mut uri: lapin::uri::AMQPUri = text.parse().map_err(|_| {
                    ConfigError::invalid(
                        &name,
                        "is not an AMQP URL (amqp://user:password@host:port/vhost)",
                    )
                })?;
                if amqp_password(text).is_some_and(is_placeholder) {
                    return Err(ConfigError::invalid(
                        &name,
                        "the password is a placeholder from an example file",
                    ));
                }
                // RabbitMQ's built-in account, fine on a developer's machine; anywhere else
                // it is a password everyone knows (and RabbitMQ refuses it by default).
                if uri.authority.userinfo.username == "guest"
                    && uri.authority.userinfo.password == "guest"
                    && !is_loopback(&uri.authority.host)
                {
                    return Err(ConfigError::invalid(
                        &name,
                        "guest/guest is RabbitMQ's default account, allowed only on this machine: give the relay a user of its own",
                    ));
                }
                if uri.query.heartbeat.is_none() {
                    uri.query.heartbeat = Some(self.heartbeat_secs);
                }
                Ok(Endpoint {
                    uri,
                    shown: redacted(text),
                })
            })
            .collect()
    }

    /// The first node's address (tests and tools that need one).
    pub fn uri(&self) -> Result<lapin::uri::AMQPUri, String> {
        self.endpoints()
            .map(|mut e| e.remove(0).uri)
            .map_err(|e| e.to_string())
    }

    /// The TLS settings for `amqps://`: the CA bundle added to the system's roots and the
    /// client certificate, read and checked (PEM parses, the key belongs to the certificate).
    pub fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &str, path: &std::path::Path| {
            super::read_capped(path, MAX_PEM_BYTES).map_err(|why| ConfigError::invalid(key, why))
        };
        let certificates = |key: &str, path: &std::path::Path, pem: &[u8]| {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    ConfigError::invalid(
                        key,
                        format!("{} is not PEM certificates: {e}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} holds no certificate", path.display()),
                ));
            }
            Ok(certs)
        };
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if let Some(path) = &self.tls_ca_file {
            let pem = read("amqp.tls_ca_file", path)?;
            certificates("amqp.tls_ca_file", path, &pem)?;
            tls.cert_chain = Some(String::from_utf8_lossy(&pem).into_owned());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "amqp.tls_key_file",
                    "is required with amqp.tls_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "amqp.tls_cert_file",
                    "is required with amqp.tls_key_file",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read("amqp.tls_cert_file", cert_path)?;
                let key = read("amqp.tls_key_file", key_path)?;
                let chain = certificates("amqp.tls_cert_file", cert_path, &cert)?;
                // The key's contents never reach a message: only its file's name.
                let private = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
                    ConfigError::invalid(
                        "amqp.tls_key_file",
                        format!("{} is not a PEM private key", key_path.display()),
                    )
                })?;
                let provider = rustls::crypto::ring::default_provider();
                rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
                    ConfigError::invalid(
                        "amqp.tls_key_file",
                        format!(
                            "{} does not go with the certificate in {}: {e}",
                            key_path.display(),
                            cert_path.display()
                        ),
                    )
                })?;
                tls.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 { pem: cert, key });
            }
        }
        Ok(tls)
    }
}

/// `url` with its password replaced by `[redacted]`, fit for a log line or an error.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:[redacted]{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// True for this machine's own names and addresses (IPv6 with or without brackets).
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The password part of an AMQP URL, if it has one.
fn amqp_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}
