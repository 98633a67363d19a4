//! Request handlers, one file per resource. Handlers never spawn processes or touch files
//! directly: they call `runner`, `sessions`, `audit`, `paths`.

pub mod admin;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod processes;
pub mod sdk;
pub mod session;
pub mod task;
