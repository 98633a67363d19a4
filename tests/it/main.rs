//! The integration tests: one binary, one module per feature, every test over a real socket
//! on 127.0.0.1 with the fake CLI (tests/fake_claude).

mod support;

/// The audit log: fields, files, concurrency, _unauthorized.
mod audit;
/// GET /health, auth, routing, the error shape, body limits, panics.
mod basics;
/// The real binary: flags, exit codes, the banner, signals.
mod binary;
/// The swagger plugin: /docs and its embedded files (types, gzip, ETag), off by default.
mod docs;
/// GET /models: Models API, settings.json, built-in list; the stale-while-refresh cache.
mod models;
/// openapi.yaml: the same routes as the router, every error code, served as written.
mod openapi;
/// POST /task: argv, stdin, tokens, cost, failures, timeouts, concurrency.
mod task;
