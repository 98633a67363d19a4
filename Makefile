# Claudeway: the two commands a user needs are `make run` and `make test`.
CARGO ?= cargo
ARGS ?=

.PHONY: run test test-sdk lint doc release size bench bench-musl e2e

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

MUSL := x86_64-unknown-linux-musl
BIN := target/$(MUSL)/release/claudeway
BUDGET := 3145728

## The static release binary (Linux x86_64, musl, stripped). Needs the rustup target and a
## musl C compiler for ring (Debian: apt-get install musl-tools).
release:
	rustup target add $(MUSL) >/dev/null 2>&1 || true
	command -v musl-gcc >/dev/null || (echo "install musl-tools (apt-get install musl-tools)" >&2; exit 1)
	$(CARGO) build --release --locked --target $(MUSL) --bin claudeway
	@ls -l $(BIN)

## The release binary's size against the 3 MiB budget, what the embedded assets add, and
## that it is static. Fails when over budget or dynamically linked.
size:
	@test -f $(BIN) || (echo "run make release first" >&2; exit 1)
	@size=$$(stat -c %s $(BIN)); \
	  assets=$$(cat $$(find web/dist assets -type f 2>/dev/null) /dev/null | wc -c); \
	  awk -v s=$$size 'BEGIN { printf "binary:          %8d bytes (%.2f MiB, budget 3.00 MiB)\n", s, s / 1048576 }'; \
	  printf 'embedded assets: %8d bytes (web/dist + assets, pre-compressed)\n' $$assets; \
	  printf 'linking:         %s\n' "$$(ldd $(BIN) 2>&1 | head -1 | sed 's/^[[:space:]]*//')"; \
	  test $$size -le $(BUDGET) || (echo "over the 3 MiB budget" >&2; exit 1); \
	  ! ldd $(BIN) 2>/dev/null | grep -q '=>' || (echo "not static" >&2; exit 1)

## End to end with the real claude CLI (pinned in tests/e2e/CLAUDE_CLI_VERSION, installed once
## into ~/.cache/claudeway-e2e) against our mock of the Anthropic API; then the official
## Python SDKs against the gateway with that CLI (tests/sdk/test_sdks_real.py; needs PyPI).
e2e:
	@cli="$$(bash tests/e2e/install-cli.sh)" && \
	CLAUDEWAY_E2E_CLI="$$cli" $(CARGO) test --test e2e && \
	CLAUDEWAY_E2E_CLI="$$cli" bash tests/sdk/run --real

## Benchmarks: the release binary with a fake CLI that answers at once; prints a table
## (see BENCHMARKS.md). Numbers only, never pass/fail; not part of CI.
bench:
	$(CARGO) build --release --bin claudeway --bin bench --bin bench-claude
	target/release/bench

## The same against the shipped static binary (make release first).
bench-musl:
	$(CARGO) build --release --bin bench --bin bench-claude
	CLAUDEWAY_BIN=$(BIN) target/release/bench

.PHONY: web dashboard-test
## Rebuild the dashboard from web/ into web/dist/ (committed, so `cargo build` needs no Node).
web:
	cd web && npm ci --no-audit --no-fund && npm run build

## The dashboard in headless Chromium (/usr/bin/chromium) against the real binary.
dashboard-test:
	$(CARGO) build --bins
	cd web && npm ci --no-audit --no-fund && node test/browser.mjs

## Swagger UI for /docs: re-create assets/swagger/ from the npm package swagger-ui-dist
## (pinned version; the page and initializer in assets/swagger/ are our own and kept).
SWAGGER_UI_VERSION = 5.35.0
.PHONY: update-swagger
update-swagger:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null && \
	 tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz); \
	p="$$tmp/package"; d=assets/swagger; mkdir -p $$d; \
	for f in swagger-ui-bundle.js swagger-ui.css; do \
	  sed '/^\/\/# sourceMappingURL=/d; /^\/\*# sourceMappingURL=.*\*\/$$/d' "$$p/$$f" | gzip -9 -n > $$d/$$f.gz; \
	done; \
	cp "$$p/favicon-32x32.png" "$$p/LICENSE" "$$p/NOTICE" "$$p/swagger-ui-bundle.js.LICENSE.txt" $$d/; \
	echo "swagger-ui-dist $(SWAGGER_UI_VERSION) -> $$d"; ls -l $$d
