//! Provider mode's store, tokens, refresh, sandbox OAuth2 and connect pages, against the real
//! PostgreSQL on 127.0.0.1:5432 and the sandbox (and headless Chromium for the browser tests).

mod api;
mod browser;
mod check;
mod commands;
mod events;
mod flow;
mod herd;
mod oauth_client;
mod onboarding;
mod processes;
mod pushes;
mod reconcile;
mod refresh;
mod relay;
mod store;
mod support;
mod tap;
mod uid;
mod withdraw;
