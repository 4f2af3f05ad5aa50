//! Whose order lists a sweep reads: each configured merchant with its own key and token, or in
//! provider mode each merchant authorized in the store, signed with the provider's key and
//! called with that merchant's token, its events naming the merchant as its pushes do.

use crate::event::MerchantTag;
use crate::keeper::TokenKeeper;
use crate::provider::domain::MerchantRef;
use crate::provider::store::Store;
use crate::settings::Merchant;

/// One order list to read.
pub(super) struct Target {
    /// Who signs the list call; its appid is the events' appid.
    pub(super) signer: Merchant,
    /// Provider mode: the merchant whose token reads the list and whom the events name.
    pub(super) merchant: Option<(MerchantRef, MerchantTag)>,
}

impl Target {
    /// The merchant_ref whose token the call uses (provider mode).
    pub(super) fn merchant_ref(&self) -> Option<&MerchantRef> {
        self.merchant.as_ref().map(|(r, _)| r)
    }

    /// What the events carry of the merchant (provider mode).
    pub(super) fn tag(&self) -> Option<&MerchantTag> {
        self.merchant.as_ref().map(|(_, t)| t)
    }
}

/// Where the targets come from.
#[derive(Clone)]
pub(super) enum Targets {
    /// The configured merchants, as the keeper holds them.
    Merchants(TokenKeeper),
    /// The provider's authorized merchants, read from the store at each sweep.
    Provider {
        /// The provider as a signer.
        signer: Merchant,
        /// The merchants' store.
        store: Store,
    },
}

impl Targets {
    /// The lists to read in this sweep.
    pub(super) async fn list(&self) -> Result<Vec<Target>, String> {
        match self {
            Self::Merchants(keeper) => Ok(keeper
                .merchants()
                .iter()
                .map(|m| Target {
                    signer: m.clone(),
                    merchant: None,
                })
                .collect()),
            Self::Provider { signer, store } => {
                let authorized = store.authorized_uids().await.map_err(|e| e.to_string())?;
                Ok(authorized
                    .into_iter()
                    .filter_map(|(uid, merchant_ref)| {
                        let parsed = MerchantRef::parse(&merchant_ref)?;
                        let tag = MerchantTag { merchant_ref, uid };
                        Some(Target {
                            signer: signer.clone(),
                            merchant: Some((parsed, tag)),
                        })
                    })
                    .collect())
            }
        }
    }
}
