//! The documents are the contract: every message the relay publishes and every answer it
//! gives is validated against `docs/schemas/*.json` (and each HTTP answer against the schema
//! `docs/openapi.yaml` gives for its path, method and status), so drift between the code and
//! the docs is a test failure. Messages are real ones, read from the broker; their AMQP
//! properties and headers are turned into the JSON the schemas describe.

mod answers;
mod commands;
mod events;
pub(crate) mod support;
