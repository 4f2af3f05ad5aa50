//! The relay as an attacker and a clumsy producer meet it: slow clients, forged log lines,
//! poison commands, replays, redirects.

mod commands;
mod permissions;
mod receiver;
mod redirects;
mod support;
