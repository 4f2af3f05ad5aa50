//! Integration tests against the real RabbitMQ on 127.0.0.1:5672: one module per subject,
//! the harness and what several subjects share in `support`.

mod broker;
mod check;
mod cli;
mod cluster;
mod demo;
mod deploy;
mod dlq;
mod event_log;
mod examples;
mod faults;
mod fixtures;
mod fresh_machine;
mod gateway;
mod gateway_catalogue;
mod gateway_faults;
mod gateway_hostile;
mod gateway_secrecy;
mod keeper;
mod leftover;
mod limits;
mod monitoring;
mod ops;
mod process;
mod push;
mod recovery;
mod replay;
mod sandbox;
mod schemas;
mod security;
mod support;
mod sweep_bounds;
mod trace_context;
mod walkthrough;
mod worker;
mod worker_faults;
