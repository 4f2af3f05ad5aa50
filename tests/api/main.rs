//! Integration tests against the real RabbitMQ on 127.0.0.1:5672.

mod broker;
mod cli;
mod deploy;
mod fixtures;
mod helpers;
mod ops;
mod process;
mod proxy;
mod push;
mod worker;
