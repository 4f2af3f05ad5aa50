//! One token keeper for the whole deployment: several real `worker` processes sharing one
//! broker, one sandbox and one merchant, killed and cut off for real.

mod failover;
mod forgery;
mod hellos;
mod secrecy;
mod stranger;
mod support;
