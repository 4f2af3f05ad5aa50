//! The platform gateway (docs/platform-gateway.md): the merchant's other systems call any
//! capability interface of the catalogue through the relay, which signs with the merchant's
//! key, adds its one token and takes its one rate limit's permits. The token never leaves.
//!
//! A request goes through [`clients`] (who is it, how fast), [`request`] (what it asks, read
//! and checked), [`call`] (the platform, retried within the deadline) and [`answer`] (one
//! error type for every answer that is not a success); [`http`] is the thin handler.

mod answer;
mod call;
mod clients;
mod http;
mod metrics;
mod request;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::keeper::TokenKeeper;
use crate::permits::Permits;
use crate::settings::{InterfaceSpec, Merchants, Settings};
use crate::weibo::WeiboClient;

pub use answer::{GatewayError, Relay};
pub use clients::Clients;
pub use http::{routes, serve};
pub use metrics::GatewayMetrics;
pub use request::params_text;

/// The metric label of anything outside the configuration.
pub const OTHER: &str = "other";

/// Everything a gateway request needs; one per process, shared by its handlers.
pub struct Gateway {
    interfaces: BTreeMap<String, InterfaceSpec>,
    clients: Clients,
    merchants: Merchants,
    keeper: TokenKeeper,
    permits: Permits,
    client: WeiboClient,
    metrics: GatewayMetrics,
    deadline: Duration,
    body_timeout: Duration,
    max_body_bytes: usize,
    max_params: usize,
}

impl Gateway {
    /// The gateway of `settings`, calling through this process's keeper, permits and client.
    pub fn new(
        settings: &Settings,
        keeper: TokenKeeper,
        permits: Permits,
        client: WeiboClient,
        metrics: GatewayMetrics,
    ) -> Self {
        let gateway = &settings.gateway;
        Self {
            interfaces: gateway.interfaces.clone(),
            clients: Clients::new(&gateway.clients),
            merchants: settings.merchants.clone(),
            keeper,
            permits,
            client,
            metrics,
            deadline: gateway.deadline_ms.get(),
            body_timeout: settings.http.body_timeout_ms.get(),
            max_body_bytes: gateway.max_body_bytes.as_usize(),
            max_params: gateway.max_params.as_usize(),
        }
    }

    /// The interface's label: its name when the catalogue has it, else [`OTHER`].
    fn interface_label<'a>(&self, interface: &'a str) -> &'a str {
        if self.interfaces.contains_key(interface) {
            interface
        } else {
            OTHER
        }
    }
}
