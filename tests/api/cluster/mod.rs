//! The broker as production runs it: a 3-node cluster losing the node the relay is on, and a
//! node that requires mutual TLS with a private CA. Both are started by
//! `tests/cluster/cluster.sh`, apart from the machine's own broker, and removed afterwards
//! even when a test fails.

mod failover;
mod support;
mod tls;
