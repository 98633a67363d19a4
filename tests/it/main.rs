//! The integration tests: one binary, one module per feature, every test over a real socket
//! on 127.0.0.1 with the fake CLI (tests/fake_claude).

mod support;

/// The admin API (cookie login, CSRF, throttle, totals, logs cursor) and the dashboard files.
mod admin;
/// The audit log: fields, files, concurrency, _unauthorized.
mod audit;
/// GET /health, auth, routing, the error shape, body limits, panics.
mod basics;
/// The real binary: flags, exit codes, the banner, signals.
mod binary;
/// Deployment files and the healthcheck subcommand.
mod deploy;
/// The swagger plugin: /docs and its embedded files (types, gzip, ETag), off by default.
mod docs;
/// Loopback fakes of Slack's webhook and the Telegram Bot API (support for the plugin tests).
mod fakes;
/// Connection hygiene: slow and silent clients, idle sockets, hostile heads and bodies.
mod hygiene;
/// Limits: rate limits, budgets, the queue, agent options, watchdogs, processes, metrics.
mod limits;
/// GET /models: Models API, settings.json, built-in list; the stale-while-refresh cache.
mod models;
/// openapi.yaml: the same routes as the router, every error code, served as written.
mod openapi;
/// Plugins on the event bus: every event to Slack, retries, a hanging receiver, settings.
mod plugins;
/// The sandbox (Landlock, a PID namespace per run), per-key CLI homes, secrets in /proc.
mod sandbox;
/// The OpenAI/Anthropic-compatible routes: shapes, streams, resumed history, errors, images.
mod sdk;
/// Sessions: turns, ownership, restarts, expiry, approvals.
mod session;
/// The first-run setup through a pseudo-terminal, and when it is skipped.
mod setup;
/// POST /task/stream (SSE) and GET /task/ws (WebSocket).
mod stream;
/// POST /task: argv, stdin, tokens, cost, failures, timeouts, concurrency.
mod task;
/// Telegram: escaping, the Approve / Deny keyboard, expiry, approval outcome, API errors.
mod telegram;
/// The Cloudflare tunnel with a fake cloudflared: URL, restart, token, shutdown, missing.
mod tunnel;
