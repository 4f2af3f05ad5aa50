//! Every answer of `POST {push.path}` and what reaches the broker.

mod publish;
mod refusals;
mod support;
