//! `WeiboClient` against the sandbox: signatures, every row of the code table, transport faults.

mod errors;
mod interfaces;
mod orders;
mod support;
