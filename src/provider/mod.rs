//! Service-provider mode (contract: `docs/relay-contract.md`, "Service-provider mode"): one
//! relay for many merchants, each onboarded through Weibo's OAuth2 code flow and kept in
//! PostgreSQL with its tokens sealed.
//!
//! The parts, each usable on its own:
//! - [`settings`]: the `[provider]` section, parsed into [`settings::ProviderConfig`].
//! - [`crypto`]: the key ring sealing every token (AES-256-GCM, bound to its row and column).
//! - [`store`]: merchants, links, states and the outbox of merchant events.
//! - [`oauth`]: the platform's OAuth2 side ([`oauth::OAuthClient`]) and its HTTP client.
//! - [`onboarding`]: links, the authorization callback, the cancel callback and revocation.
//! - [`refresh`]: one refresh per merchant across the deployment, spread over time.
//! - [`pages`]: the connect pages, as an actix `configure` function.
//! - [`run`]: all of it inside a running relay (`Application::build`).

pub mod api;
pub mod crypto;
pub mod domain;
pub mod oauth;
pub mod onboarding;
pub mod pages;
pub mod refresh;
pub mod run;
pub mod settings;
pub mod store;
