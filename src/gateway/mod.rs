//! The platform gateway (docs/platform-gateway.md): the merchant's other systems call any
//! capability interface of the catalogue through the relay's token and rate limit.

/// The metric label of anything outside the configuration.
pub const OTHER: &str = "other";
