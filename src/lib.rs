//! weibo-relay: receives Weibo e-commerce order pushes, stores them in RabbitMQ, and reports
//! fulfilment back to the platform.
//!
//! Everything here but [`tooling`] is the relay the production binary runs. `tooling` (the
//! simulated platform, the demo, the load generators and the harness they share with the
//! tests) is behind the default `tooling` feature; the image builds without it.

// Operators on times and durations panic on overflow; with clippy.toml this leaves plain
// integer arithmetic alone and catches those (see `clock`).
#![warn(clippy::arithmetic_side_effects)]

pub mod amqp;
pub mod check;
pub mod cli;
pub mod clock;
pub mod event;
pub mod http;
pub mod ids;
pub mod keeper;
pub mod keys;
pub mod metrics;
pub mod permits;
pub mod provider;
pub mod push;
pub mod reconcile;
pub mod settings;
pub mod signature;
pub mod startup;
pub mod supervise;
pub mod telemetry;
#[cfg(feature = "tooling")]
pub mod tooling;
pub mod trace;
pub mod weibo;
pub mod worker;
