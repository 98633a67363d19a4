//! End-to-end tests: Claudeway in-process with the real `claude` CLI (pinned in
//! tests/e2e/CLAUDE_CLI_VERSION, installed by tests/e2e/install-cli.sh) talking to our mock
//! of the Anthropic API (tests/mock_anthropic). They catch what the fake CLI cannot: drift
//! between our parsing and what the real CLI prints and sends. Without `CLAUDEWAY_E2E_CLI`
//! every test that needs the CLI says it was skipped and passes; `make e2e` runs them all.

#[path = "../mock_anthropic/mock.rs"]
mod mock;
#[path = "../it/support.rs"]
mod support;

mod harness;

/// A key's budget reaching the CLI as --max-budget-usd, then refusals.
mod budget;
/// The real CLI against the mock, without Claudeway: the harness itself (sessions' RECALL).
mod cli;
/// The mock alone, fed requests captured from the real CLI (runs without the CLI).
mod mock_selftest;
/// GET /models from the mock's Models API, through [claude.env].
mod models;
/// The sandbox around the real CLI: writes, connections, /proc, and mode off.
mod sandbox;
/// Sessions with the real CLI: turns over HTTP, SSE and WebSocket, restart, approvals.
mod session;
/// /task/stream and /task/ws with the real CLI: deltas as they come, then done.
mod stream;
/// POST /task and GET /health with the real CLI: text, tokens, cost, errors, timeouts, tools.
mod task;
