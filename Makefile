# Claudeway: the two commands a user needs are `make run` and `make test`.
CARGO ?= cargo
ARGS ?=

.PHONY: run test lint doc release bench e2e

## Start the server (release build) on 0.0.0.0:3000; pass flags with ARGS="--port 8080".
run:
	$(CARGO) run --release -- $(ARGS)

## The whole test suite: unit tests and the HTTP integration tests with the fake CLI.
test:
	$(CARGO) test --all-targets

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --document-private-items

## The release binary (host target).
release:
	$(CARGO) build --release
	@ls -l target/release/claudeway

## End to end with the real claude CLI (pinned in tests/e2e/CLAUDE_CLI_VERSION, installed once
## into ~/.cache/claudeway-e2e) against our mock of the Anthropic API.
e2e:
	@cli="$$(bash tests/e2e/install-cli.sh)" && \
	CLAUDEWAY_E2E_CLI="$$cli" $(CARGO) test --test e2e

## Benchmarks: the release binary with a fake CLI that answers at once; prints a table
## (see BENCHMARKS.md). Numbers only, never pass/fail; not part of CI.
bench:
	$(CARGO) build --release --bin claudeway --bin bench --bin bench-claude
	target/release/bench
