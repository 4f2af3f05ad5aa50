//! weibo-relay: receives Weibo e-commerce order pushes, stores them in RabbitMQ, and reports
//! fulfilment back to the platform.

pub mod amqp;
pub mod bench;
pub mod check;
pub mod cli;
pub mod config;
pub mod dedup;
pub mod demo;
pub mod event;
pub mod http;
pub mod metrics;
pub mod permits;
pub mod push;
pub mod reconcile;
pub mod sandbox;
pub mod signature;
pub mod stage;
pub mod startup;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod weibo;
pub mod worker;
