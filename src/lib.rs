//! weibo-relay: receives Weibo e-commerce order pushes, stores them in RabbitMQ, and reports
//! fulfilment back to the platform.
//!
//! Everything here is the relay the production binary runs; the simulated platform, the demo,
//! the load generators and the tests' harness are the `weibo-relay-tooling` crate
//! (tests/tooling), a client of this library like any other.

// Operators on times and durations panic on overflow; with clippy.toml this leaves plain
// integer arithmetic alone and catches those (see `clock`).
#![warn(clippy::arithmetic_side_effects)]

pub mod amqp;
pub mod check;
pub mod cli;
pub mod clock;
pub mod event;
pub mod gateway;
pub mod hexstr;
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
pub mod tokens;
pub mod trace;
pub mod weibo;
pub mod worker;
