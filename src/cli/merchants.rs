//! `weibo-relay merchants ...`: provider mode's merchants from the operator's terminal.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;

use super::load;
use crate::provider::domain::MerchantRef;
use crate::provider::onboarding::RevokeOutcome;
use crate::provider::run::{oauth_client, onboarding, open_store};
use crate::provider::store::MerchantView;
use crate::telemetry::printable;

/// Rows `rekey` moves per transaction.
const REKEY_BATCH: i64 = 100;

/// `merchants` subcommands.
#[derive(Debug, Subcommand)]
pub enum MerchantsAction {
    /// Create a single-use onboarding link for a merchant and print it.
    Link {
        /// The provider's own name for the merchant.
        #[arg(long = "ref", value_name = "MERCHANT_REF")]
        merchant_ref: String,
        /// Where the merchant's browser goes afterwards (under provider.return_url_origins).
        #[arg(long, value_name = "URL")]
        return_url: Option<String>,
    },
    /// Every merchant with its status and token times.
    List {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One merchant.
    Show {
        /// The merchant.
        #[arg(value_name = "MERCHANT_REF")]
        merchant_ref: String,
        /// A JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a merchant's authorization at Weibo (revokeoauth2) and delete its tokens.
    Revoke {
        /// The merchant.
        #[arg(value_name = "MERCHANT_REF")]
        merchant_ref: String,
    },
    /// Re-seal every stored token under the newest of provider.store_keys.
    Rekey,
}

/// Parsed here rather than by clap, whose refusal would echo the value unescaped.
fn parse_ref(text: &str) -> anyhow::Result<MerchantRef> {
    MerchantRef::parse(text).ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not a merchant_ref (1 to 64 of A-Z a-z 0-9 . _ -)",
            printable(text)
        )
    })
}

/// Runs a `merchants` subcommand against the store of `[provider]`.
pub(super) fn run(config: Option<PathBuf>, action: MerchantsAction) -> anyhow::Result<()> {
    let settings = load(config)?;
    let provider = settings
        .provider
        .as_ref()
        .context("merchants: this configuration has no [provider] section (service-provider mode)")?
        .config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = open_store(provider).await?;
        let oauth_base = &settings.weibo.oauth_base;
        match action {
            MerchantsAction::Link {
                merchant_ref,
                return_url,
            } => {
                let merchant_ref = parse_ref(&merchant_ref)?;
                let onboarding = onboarding(
                    provider,
                    oauth_base,
                    &store,
                    oauth_client(provider, oauth_base)?,
                )?;
                let link = onboarding
                    .create_link(&merchant_ref, return_url.as_deref(), SystemTime::now())
                    .await?;
                println!("{}", link.url);
                eprintln!(
                    "single use, for {} until {}",
                    link.merchant_ref,
                    crate::clock::rfc3339(link.expires_at).unwrap_or_default()
                );
            }
            MerchantsAction::List { json } => {
                for row in store.merchants().await? {
                    print_view(&row.view(), json)?;
                }
            }
            MerchantsAction::Show { merchant_ref, json } => {
                let merchant_ref = parse_ref(&merchant_ref)?;
                let row = store
                    .merchant(&merchant_ref)
                    .await?
                    .with_context(|| format!("no merchant {merchant_ref}"))?;
                print_view(&row.view(), json)?;
            }
            MerchantsAction::Revoke { merchant_ref } => {
                let merchant_ref = parse_ref(&merchant_ref)?;
                let onboarding = onboarding(
                    provider,
                    oauth_base,
                    &store,
                    oauth_client(provider, oauth_base)?,
                )?;
                match onboarding.revoke(&merchant_ref, SystemTime::now()).await? {
                    RevokeOutcome::Revoked => println!("revoked {merchant_ref}: tokens deleted"),
                    RevokeOutcome::NotAuthorized(status) => println!(
                        "{merchant_ref} is {}: no authorization to revoke",
                        status.as_str()
                    ),
                }
            }
            MerchantsAction::Rekey => {
                let report = store.rekey(&provider.keys, REKEY_BATCH).await?;
                println!(
                    "{} moved to the newest key, {} already under it, {} failed",
                    report.moved, report.current, report.failed
                );
                anyhow::ensure!(
                    report.failed == 0,
                    "{} merchant(s) have tokens no configured key opens (named in the log)",
                    report.failed
                );
            }
        }
        store.close().await;
        Ok(())
    })
}

/// A merchant as text (one line, every field escaped) or JSON.
fn print_view(view: &MerchantView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(view)?);
        return Ok(());
    }
    let or_dash = |v: &Option<String>| {
        v.as_deref()
            .map_or("-".into(), |t| printable(t).into_owned())
    };
    println!(
        "{} status={} uid={} last_refresh={} access_expires={} refresh_expires={} last_error={}",
        view.merchant_ref,
        view.status.as_str(),
        or_dash(&view.uid),
        or_dash(&view.last_refresh_at),
        or_dash(&view.access_expires_at),
        or_dash(&view.refresh_expires_at),
        or_dash(&view.last_error),
    );
    Ok(())
}
