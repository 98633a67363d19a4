# Claudeway: the two commands a user needs are `make run` and `make test`.
CARGO ?= cargo
ARGS ?=

.PHONY: run test lint doc release bench

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

## Benchmarks print numbers and never fail the build. Not written yet: see the benchmark issue.
bench:
	@echo "make bench: the benchmark suite is not written yet (see the benchmark issue)"

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
