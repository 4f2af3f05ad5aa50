//! The platform client and the token keeper against a real sandbox on 127.0.0.1:0.

mod client;
mod keeper;
mod support;
