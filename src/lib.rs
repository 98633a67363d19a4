//! Claudeway: an HTTP API in front of the `claude` CLI. The modules are listed in the order
//! a request meets them; ARCHITECTURE.md has the map and the invariants.

pub mod app;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod claude;
pub mod clock;
pub mod config;
pub mod conversation;
pub mod error;
pub mod events;
pub mod exchange;
pub mod flags;
pub mod handlers;
pub mod healthcheck;
pub mod input;
pub mod keys;
pub mod os;
pub mod paths;
pub mod random;
pub mod reply;
pub mod router;
pub mod runner;
pub mod runs;
pub mod sdk;
pub mod server;
pub mod sessions;
pub mod stream;
pub mod which;
