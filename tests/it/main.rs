//! The integration tests: one binary, one module per feature, every test over a real socket
//! on 127.0.0.1 with the fake CLI (tests/fake_claude).

mod support;

/// The audit log: fields, files, concurrency, _unauthorized.
mod audit;
/// GET /health, auth, routing, the error shape, body limits, panics.
mod basics;
/// The real binary: flags, exit codes, the banner, signals.
mod binary;
/// The OpenAI/Anthropic-compatible routes: shapes, streams, resumed history, errors, images.
mod sdk;
/// Sessions: turns, ownership, restarts, expiry, approvals.
mod session;
/// POST /task/stream (SSE) and GET /task/ws (WebSocket).
mod stream;
/// POST /task: argv, stdin, tokens, cost, failures, timeouts, concurrency.
mod task;
