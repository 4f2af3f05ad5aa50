//! Onboarding and offboarding a merchant (contract: "Onboarding a merchant", "Rules nobody may
//! break"): links, the button that turns a link into a `state` and a trip to Weibo, the
//! callback, the cancel callback and revocation. The connect pages ([`super::pages`]) and the
//! CLI are thin layers over [`Onboarding`].

mod callback;
mod withdraw;

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use super::domain::MerchantRef;
use super::oauth::OAuthClient;
use super::refresh::RefreshPolicy;
use super::settings::ProviderConfig;
use super::store::links::{insert_link, LinkRefusal, LinkRow};
use super::store::{merchants, Store, StoreError};
use crate::clock::Later;

pub use callback::{AuthStatus, CallbackOutcome, CallbackParams};
pub use withdraw::{CancelOutcome, RevokeError, RevokeOutcome};

/// The path of a link under `public_base`; the page at `{CONNECT_PATH}/<id>`.
pub const CONNECT_PATH: &str = "/connect";
/// The cancel callback's path under `public_base`.
pub const CANCEL_PATH: &str = "/connect/cancelled";

/// Why a link was not created.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The return URL is not under `provider.return_url_origins`.
    #[error("return URL refused: it must be an http(s) URL under provider.return_url_origins")]
    ReturnUrlRefused,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A link as handed to the provider.
#[derive(Debug, Clone)]
pub struct Link {
    /// `{public_base}/connect/<id>`: the id is 256 random bits, stored only hashed.
    pub url: Url,
    /// The merchant it onboards.
    pub merchant_ref: MerchantRef,
    /// When it stops working.
    pub expires_at: SystemTime,
}

/// Provider mode's onboarding. Cheap to clone.
#[derive(Clone)]
pub struct Onboarding {
    store: Store,
    client: Arc<dyn OAuthClient>,
    config: Arc<ProviderConfig>,
    policy: Arc<RefreshPolicy>,
    authorize: Url,
}

impl Onboarding {
    /// Onboarding for `config`'s app, sending browsers to `{oauth_base}/oauth2/authorize`.
    pub fn new(
        store: Store,
        client: Arc<dyn OAuthClient>,
        config: ProviderConfig,
        oauth_base: &str,
        policy: RefreshPolicy,
    ) -> Result<Self, url::ParseError> {
        let authorize = Url::parse(&format!(
            "{}/oauth2/authorize",
            oauth_base.trim_end_matches('/')
        ))?;
        Ok(Self {
            store,
            client,
            config: Arc::new(config),
            policy: Arc::new(policy),
            authorize,
        })
    }

    /// The provider's configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The platform's authorize endpoint (its origin goes into the pages' `form-action`).
    pub fn authorize_endpoint(&self) -> &Url {
        &self.authorize
    }

    /// Creates a single-use link onboarding `merchant` (pending unless it exists: a link for an
    /// existing merchant re-authorizes it), expiring after `provider.link_ttl_secs`.
    #[tracing::instrument(skip(self, return_url), fields(merchant = %merchant))]
    pub async fn create_link(
        &self,
        merchant: &MerchantRef,
        return_url: Option<&str>,
        now: SystemTime,
    ) -> Result<Link, LinkError> {
        let return_url = match return_url {
            Some(text) => Some(
                self.config
                    .return_origins
                    .check(text)
                    .ok_or(LinkError::ReturnUrlRefused)?,
            ),
            None => None,
        };
        let id = random_token();
        let expires_at = now.later(self.config.link_ttl);
        let mut tx = self.store.begin().await?;
        merchants::ensure(&mut tx, merchant).await?;
        insert_link(
            &mut tx,
            &digest(&id),
            merchant,
            return_url.as_ref().map(Url::as_str),
            expires_at,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut url = self.config.public_base.clone();
        url.set_path(&format!(
            "{}{CONNECT_PATH}/{id}",
            url.path().trim_end_matches('/')
        ));
        Ok(Link {
            url,
            merchant_ref: merchant.clone(),
            expires_at,
        })
    }

    /// The link behind `/connect/<id>`, if it still leads to Weibo.
    pub async fn link(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<LinkRow, LinkRefusal>, StoreError> {
        if !is_token_shaped(id) {
            return Ok(Err(LinkRefusal::Unknown));
        }
        self.store.open_link(&digest(id), now).await
    }

    /// The button: uses the link, binds a fresh 256-bit `state` to it, and returns the URL of
    /// Weibo's consent page carrying that state.
    #[tracing::instrument(skip_all)]
    pub async fn begin(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<Url, LinkRefusal>, StoreError> {
        if !is_token_shaped(id) {
            return Ok(Err(LinkRefusal::Unknown));
        }
        let state = random_token();
        if let Err(refusal) = self
            .store
            .use_link(&digest(id), &digest(&state), now)
            .await?
        {
            return Ok(Err(refusal));
        }
        let mut url = self.authorize.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", self.config.redirect_uri.as_str())
            .append_pair("response_type", "code")
            .append_pair("state", &state)
            .append_pair("forcelogin", "true");
        Ok(Ok(url))
    }
}

/// 32 random bytes, base64url without padding (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a link id or state.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Could be one of ours: 43 base64url characters. Anything else is unknown without a lookup.
fn is_token_shaped(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
