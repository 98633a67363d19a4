# Claudeway: the two commands a user needs are `make run` and `make test`.
CARGO ?= cargo
ARGS ?=

.PHONY: run test test-sdk lint doc release bench

## Start the server (release build) on 0.0.0.0:3000; pass flags with ARGS="--port 8080".
run:
	$(CARGO) run --release -- $(ARGS)

## The whole test suite: unit tests and the HTTP integration tests with the fake CLI.
test:
	$(CARGO) test --all-targets

## The official OpenAI and Anthropic Python SDKs against the gateway (needs python3 and PyPI).
test-sdk:
	bash tests/sdk/run

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

## Benchmarks print numbers and never fail the build. Not written yet: see the benchmark issue.
bench:
	@echo "make bench: the benchmark suite is not written yet (see the benchmark issue)"
