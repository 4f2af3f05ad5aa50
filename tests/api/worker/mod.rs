//! The fulfilment worker against the real broker and the sandbox platform.

mod commands;
mod dlq;
mod resilience;
mod support;
