//! `[amqp]`: the broker nodes, parsed and their credentials checked, and the TLS files read,
//! once, when the settings are loaded: the broker link takes them as they are.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;

use super::{is_placeholder, AmqpSettings, ConfigError};

/// The largest TLS file read (a CA bundle, a certificate chain, a key): the system's whole CA
/// store is about 200 KiB, and a path such as `/dev/zero` must not be read without end.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A broker URL, parsed: its address, the text (a secret: it holds the password) and how
/// logs show it. Debug shows the redacted form only.
#[derive(Clone)]
pub struct AmqpUrl {
    uri: lapin::uri::AMQPUri,
    text: SecretString,
    shown: String,
}

impl AmqpUrl {
    /// Parses `text`; the reason never repeats the URL (its password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: lapin::uri::AMQPUri = text
            .parse()
            .map_err(|_| "is not an AMQP URL (amqp://user:password@host:port/vhost)".to_owned())?;
        if amqp_password(text).is_some_and(is_placeholder) {
            return Err("the password is a placeholder from an example file".into());
        }
        // RabbitMQ's built-in account, fine on a developer's machine; anywhere else it is a
        // password everyone knows (and RabbitMQ refuses it by default).
        if uri.authority.userinfo.username == "guest"
            && uri.authority.userinfo.password == "guest"
            && !is_loopback(&uri.authority.host)
        {
            return Err("guest/guest is RabbitMQ's default account, allowed only on this machine: give the relay a user of its own".into());
        }
        Ok(Self {
            uri,
            shown: redacted(text),
            text: SecretString::from(text.to_owned()),
        })
    }

    /// The node's address.
    pub fn uri(&self) -> &lapin::uri::AMQPUri {
        &self.uri
    }

    /// The URL with its password replaced, fit for logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for AmqpUrl {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.text.expose_secret(), other.text.expose_secret());
        a.as_bytes().ct_eq(b.as_bytes()).into()
    }
}

impl<'de> Deserialize<'de> for AmqpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = SecretString::deserialize(d)?;
        Self::parse(text.expose_secret()).map_err(de::Error::custom)
    }
}

/// Writes the URL with its password: only for a configuration file (see [`super::Settings`]).
pub(super) fn expose_url<S: Serializer>(url: &AmqpUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.text.expose_secret())
}

/// Writes every URL with its password: only for a configuration file.
pub(super) fn expose_urls<S: Serializer>(urls: &[AmqpUrl], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| u.text.expose_secret()))
}

/// A PEM file read when the settings were loaded: its path and what it held.
#[derive(Clone, PartialEq, Eq)]
struct Pem {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Pem {
    fn read(path: PathBuf) -> Result<Self, String> {
        let bytes = super::read_capped(&path, MAX_PEM_BYTES)?;
        Ok(Self { path, bytes })
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let shown = self.path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{shown} is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{shown} holds no certificate"));
        }
        Ok(certs)
    }
}

/// A PEM file of certificates (a CA bundle, a client certificate and its chain), read and
/// checked to hold at least one when the settings were loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificates(Pem);

/// A PEM private key file (PKCS#8, PKCS#1 or SEC1), read and checked when the settings were
/// loaded. A secret: Debug shows its path only.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(Pem);

impl Certificates {
    /// Reads and checks the file at `path`.
    pub fn read(path: impl Into<PathBuf>) -> Result<Self, String> {
        let pem = Pem::read(path.into())?;
        pem.certificates()?;
        Ok(Self(pem))
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

impl PrivateKey {
    /// Reads and checks the file at `path`; the reason names the file, never its contents.
    pub fn read(path: impl Into<PathBuf>) -> Result<Self, String> {
        let pem = Pem::read(path.into())?;
        PrivateKeyDer::from_pem_slice(&pem.bytes)
            .map_err(|_| format!("{} is not a PEM private key", pem.path.display()))?;
        Ok(Self(pem))
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

macro_rules! pem_file {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0.path, f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::read(PathBuf::deserialize(d)?).map_err(de::Error::custom)
            }
        }

        /// Its path, as a configuration file names it.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.path.serialize(s)
            }
        }
    };
}

pem_file!(Certificates);
pem_file!(PrivateKey);

/// One broker node: its address, and how logs and errors show it (password hidden).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The node's address, heartbeat set.
    pub uri: lapin::uri::AMQPUri,
    /// The URL with its password replaced.
    pub shown: String,
}

impl AmqpSettings {
    /// The URL with its password replaced, fit for logs.
    pub fn redacted_url(&self) -> String {
        self.url.shown().to_owned()
    }

    /// The nodes to connect to (`urls`, or `url` alone), each with `heartbeat_secs` unless its
    /// URL sets its own, and how it is shown in logs.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let urls = if self.urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            self.urls.as_slice()
        };
        let heartbeat = u16::try_from(self.heartbeat_secs.get().as_secs()).unwrap_or(u16::MAX);
        urls.iter()
            .map(|url| {
                let mut uri = url.uri().clone();
                uri.query.heartbeat.get_or_insert(heartbeat);
                Endpoint {
                    uri,
                    shown: url.shown().to_owned(),
                }
            })
            .collect()
    }

    /// The TLS settings for `amqps://`: the CA bundle added to the system's roots and the
    /// client certificate with its key, as read when the settings were loaded.
    pub fn tls(&self) -> lapin::tcp::OwnedTLSConfig {
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if let Some(ca) = &self.tls_ca_file {
            tls.cert_chain = Some(String::from_utf8_lossy(&ca.0.bytes).into_owned());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            tls.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 {
                pem: cert.0.bytes.clone(),
                key: key.0.bytes.clone(),
            });
        }
        tls
    }

    /// Both or neither of the client certificate and key, and the key the certificate's.
    pub(super) fn check_identity(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(ConfigError::invalid(
                "amqp.tls_key_file",
                "is required with amqp.tls_cert_file",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "amqp.tls_cert_file",
                "is required with amqp.tls_key_file",
            )),
            (Some(cert), Some(key)) => {
                let invalid = |why: String| ConfigError::invalid("amqp.tls_key_file", why);
                let chain = cert.0.certificates().map_err(invalid)?;
                let private = PrivateKeyDer::from_pem_slice(&key.0.bytes).map_err(|_| {
                    invalid(format!("{} is not a PEM private key", key.0.path.display()))
                })?;
                let provider = rustls::crypto::ring::default_provider();
                rustls::sign::CertifiedKey::from_der(chain, private, &provider)
                    .map(|_| ())
                    .map_err(|e| {
                        invalid(format!(
                            "{} does not go with the certificate in {}: {e}",
                            key.0.path.display(),
                            cert.0.path.display()
                        ))
                    })
            }
        }
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
