//! deploy/ must agree with the code: the configs load, the YAML is well-formed and wired as
//! documented, and the RabbitMQ definitions are exactly the topology the relay declares (a
//! mismatch makes the relay's own declarations fail with PRECONDITION_FAILED).
//! No broker needed.

mod broker;
mod compose;
mod config;
mod k8s;
mod support;
