//! Request handlers, one file per resource. Handlers never spawn processes or touch files
//! directly: they call `runner`, `sessions`, `audit`, `paths`.

pub mod health;
pub mod sdk;
pub mod session;
pub mod task;
