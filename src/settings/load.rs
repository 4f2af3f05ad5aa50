//! Loading: the defaults, the file, the environment, one after the other; every refusal one
//! line naming the key.

use std::path::Path;

use super::{read_capped, CodeMeaning, Settings, MAX_CONFIG_BYTES};
use crate::metrics::Label;

/// The defaults operators read: every key is documented there once.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// Why settings could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read, or did not fit the schema where no key
    /// can be named: the `config` crate's reason, on one line. (Kept as text, not as a
    /// source: printed with its chain, a source would repeat the same words after a colon.)
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// Dotted path of the key, such as `merchants[0].sign_key`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A refusal while reading a key (its type's check, an unknown field in its table) names the
/// key; anything else is the `config` crate's reason on one line.
impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } if matches!(*error, config::ConfigError::Message(_)) => Self::Invalid {
                key: dotted(&key),
                reason: one_line(&error.to_string()),
            },
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::Invalid {
                key: dotted(&key),
                reason: format!("invalid type: {unexpected}, expected {expected}"),
            },
            other => Self::Load(one_line(&other.to_string())),
        }
    }
}

/// A key path as the `config` crate writes it (`merchants[0]sign_key`), with the dot the
/// documents write after an index (`merchants[0].sign_key`).
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            out.push('.');
        }
    }
    out
}

/// A TOML parse error's snippet (`1 | [http`, `|      ^`) folded into its first line and
/// its reason, so a bad file is still one line of log or terminal.
fn one_line(message: &str) -> String {
    let is_snippet = |line: &str| {
        let body = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        body.is_empty() || body.starts_with('|') || body.trim().chars().all(|c| c == '^')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !is_snippet(line))
        .collect::<Vec<_>>()
        .join(": ")
}

impl Settings {
    /// Defaults, then `file` if given, then `WEIBO_RELAY__*` variables taken from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            let bytes = read_capped(path, MAX_CONFIG_BYTES).map_err(ConfigError::Load)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError::Load(format!("{} is not UTF-8 text", path.display())))?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WEIBO_RELAY__"))
            .collect();
        let mut environment = config::Environment::with_prefix("WEIBO_RELAY")
            .prefix_separator("__")
            .separator("__")
            // Lists (the nodes, the code table) as comma-separated values.
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        // Keys whose environment value is a comma-separated list.
        let lists =
            std::iter::once("amqp.urls".to_owned()).chain(CodeMeaning::all().map(CodeMeaning::key));
        for key in lists {
            environment = environment.with_list_parse_key(&key);
        }
        builder = builder.add_source(environment);
        let built =
            builder.build().map_err(|e| match (e, file) {
                // Only the file can fail to parse (the defaults are tested): say which file.
                (e @ config::ConfigError::FileParse { .. }, Some(path)) => ConfigError::Load(
                    format!("{}: in {}", one_line(&e.to_string()), path.display()),
                ),
                (e, _) => e.into(),
            })?;
        let settings: Settings = built.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Defaults and the given TOML text only; used by tests and the demo.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULTS_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }
}
