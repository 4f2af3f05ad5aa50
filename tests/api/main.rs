//! Integration tests against the real RabbitMQ on 127.0.0.1:5672.

mod broker;
mod check;
mod cli;
mod cluster;
mod demo;
mod deploy;
mod event_log;
mod examples;
mod faults;
mod fixtures;
mod gateway;
mod helpers;
mod keeper;
mod monitoring;
mod ops;
mod process;
mod proxy;
mod push;
mod recovery;
mod rig;
mod sandbox;
mod schemas;
mod security;
mod trace_context;
mod worker;
mod worker_faults;
