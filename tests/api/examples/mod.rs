//! The consumer examples (`examples/python`, `examples/node`) run as a person runs them,
//! against a real relay: a sandbox platform pushing every order change to a `weibo-relay
//! serve` process, the example a child process with names of this test's own. Every order
//! must end finished or closed at the platform, the example's summary must be exact, and its
//! commands must carry the events' trace. Duplicates are injected on purpose (an event copied
//! whole, the same order state under another id, an outcome copied) and must be skipped.
//!
//! The test installs what the examples need: a Python venv with pika under `target/`
//! (reused), and `npm ci` in `examples/node` (node_modules is git-ignored).

mod prove;

use std::process::Command;

use crate::support::example::{node_example, python, repo};
use prove::prove;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_answers_every_order_once_against_a_real_relay() {
    let python = python();
    let mut command = Command::new(python);
    command.arg(repo().join("examples/python/consumer.py"));
    prove(command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_example_answers_every_order_once_against_a_real_relay() {
    let dir = node_example();
    let mut command = Command::new("node");
    command.arg(dir.join("consumer.js"));
    prove(command).await;
}
