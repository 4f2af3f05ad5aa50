//! `weibo-relay gateway new-key`: a client key for the platform gateway, shown once.

use clap::Subcommand;
use rand::distr::{Alphanumeric, SampleString};

use crate::settings::KeyHash;

/// `gateway` subcommands.
#[derive(Debug, Subcommand)]
pub enum GatewayAction {
    /// Print a fresh random client key (shown this once) and the configuration lines holding
    /// its SHA-256, which is all the relay keeps.
    NewKey {
        /// The client's name (metrics and audit lines): a-z, 0-9, _ and -.
        #[arg(long)]
        name: String,
    },
}

/// Characters of a key after its prefix: 48 alphanumerics, about 285 bits.
const KEY_CHARS: usize = 48;

/// Runs a `gateway` subcommand.
pub fn run(action: GatewayAction) -> anyhow::Result<()> {
    match action {
        GatewayAction::NewKey { name } => {
            let (key, lines) = new_key(&name)?;
            println!("# The key, shown this once: give it to the client, keep it nowhere else.");
            println!("# key = {key}");
            print!("{lines}");
            Ok(())
        }
    }
}

/// A fresh key and the `[[gateway.clients]]` lines to paste for it.
pub fn new_key(name: &str) -> anyhow::Result<(String, String)> {
    if !crate::settings::is_client_name(name) {
        anyhow::bail!("--name must be 1 to 64 of a-z, 0-9, _ and -, and not \"other\"");
    }
    let key = format!(
        "wrg_{}",
        Alphanumeric.sample_string(&mut rand::rng(), KEY_CHARS)
    );
    let lines = format!(
        "[[gateway.clients]]\nname = \"{name}\"\nkey_sha256 = \"{}\"\ninterfaces = []   # what it may call, e.g. [\"goods/getGoodsInfo\"]\nappids = []       # or [\"*\"]\nrate_limit_per_sec = 10\n",
        KeyHash::of(&key).hex()
    );
    Ok((key, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_random_and_its_lines_hold_only_its_hash() {
        let (a, lines) = new_key("stock-sync").unwrap();
        let (b, _) = new_key("stock-sync").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("wrg_") && a.len() == 4 + KEY_CHARS);
        assert!(!lines.contains(&a));
        assert!(lines.contains(&KeyHash::of(&a).hex()));
        assert!(new_key("Bad Name").is_err());
    }
}
