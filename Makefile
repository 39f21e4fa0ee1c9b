# The two commands a newcomer needs: `make run` and `make test`.
GO     ?= go
NOTICE := $(or $(TMPDIR),/tmp)/apikeys-test-notice-$(shell id -u)

.PHONY: run build test test-long test-stress generate check-generate lint lint-go lint-spec lint-compose bench bench-tools

## run: build, then serve on :8080 with the embedded SQLite database in ./data (no set-up needed)
run: build
	exec ./bin/apikeys serve

## build: build the binary into ./bin (BIN names another path), stamped with the version
## (git describe) and commit that apikeys --version prints
BIN     ?= bin/apikeys
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +dirty)
build:
	$(GO) build -ldflags '-X main.version=$(VERSION) -X main.commit=$(COMMIT)' -o $(BIN) ./cmd/apikeys

## test: the whole suite, on SQLite and PostgreSQL (see README: Testing); it ends by naming the
## databases it ran on, every skipped test with its reason, and "N passed, N failed, N skipped"
RAN := $(or $(TMPDIR),/tmp)/apikeys-test-ran-$(shell id -u)
REPORT := $(or $(TMPDIR),/tmp)/apikeys-testreport-$(shell id -u)
test:
	@rm -f $(NOTICE) $(RAN)
	@$(GO) build -o $(REPORT) ./tools/testreport
	@APIKEYS_TEST_NOTICE_FILE=$(NOTICE) APIKEYS_TEST_RAN_FILE=$(RAN) bash -o pipefail -c \
	  '$(GO) test -json -count=1 -race ./... 2>&1 | $(REPORT) -ran $(RAN) -notice $(NOTICE)'; \
	status=$$?; rm -f $(NOTICE) $(RAN) $(REPORT); exit $$status

## test-long: the long checks, not part of `make test` (about 10 minutes): every fuzz target of
## every package explores for FUZZTIME (30s), one at a time; then TestSoak runs the service
## binary on SQLite under mixed load from 8 clients for SOAK (5m), sampling its RSS and live
## heap, and appends its figures to RELIABILITY_REPORT (./RELIABILITY-run.md)
FUZZTIME           ?= 30s
SOAK               ?= 5m
SOAK_TIMEOUT       ?= 30m
RELIABILITY_REPORT ?= $(CURDIR)/RELIABILITY-run.md
test-long:
	@set -e; list=$$($(GO) test -list '^Fuzz' ./...) || { echo "$$list"; exit 1; }; \
	echo "$$list" | awk '/^Fuzz/ { n[++k] = $$1 } /^ok[ \t]/ { for (i = 1; i <= k; i++) print $$2, n[i]; k = 0 }' | \
	while read -r pkg name; do \
	  echo "test-long: fuzz $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done
	@printf '\n#### make test-long, %s (soak %s)\n\n| check | result | criterion |\n|---|---|---|\n' "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" '$(SOAK)' >> '$(RELIABILITY_REPORT)'
	APIKEYS_SOAK=$(SOAK) APIKEYS_RELIABILITY_REPORT='$(RELIABILITY_REPORT)' $(GO) test -tags soak -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' -v ./cmd/apikeys

## test-stress: the failure tests (the throwaway cluster frozen and restarted under load) RUNS
## times (20) beside LOAD (4) busy loops, for flakes that only a loaded machine shows
RUNS ?= 20
LOAD ?= 4
test-stress:
	RUNS=$(RUNS) LOAD=$(LOAD) bash tools/stress-failures.sh

## generate: regenerate gen/ from openapi.yaml
generate:
	$(GO) generate ./...

## check-generate: fail if gen/ is not what openapi.yaml generates
check-generate: generate
	git diff --exit-code -- gen/ go.mod go.sum

## lint: gofmt, go vet; openapi.yaml under Spectral (spectral:oas) and Redocly (recommended,
## warnings as errors), both installed from npm at the versions tools/speclint pins: no error, no
## warning; docker-compose.yml under `docker-compose config`
lint: lint-go lint-spec lint-compose
lint-go:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags soak ./cmd/apikeys
lint-compose:
	@command -v docker-compose >/dev/null || { echo "lint: docker-compose is needed to check docker-compose.yml (Debian's docker-compose)"; exit 1; }
	docker-compose -f docker-compose.yml config -q
SPECLINT := tools/speclint
lint-spec: $(SPECLINT)/node_modules/.package-lock.json
	cd $(SPECLINT) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npm run --silent lint
$(SPECLINT)/node_modules/.package-lock.json: $(SPECLINT)/package.json $(SPECLINT)/package-lock.json
	@command -v npm >/dev/null || { echo 'lint: npm is needed (Node.js 20.19 or later; 22.12 or later recommended, as Redocly asks)'; exit 1; }
	cd $(SPECLINT) && npm ci --no-audit --no-fund --ignore-scripts

## bench: benchmarks (figures are ratios against a baseline measured in the same run): the Go
## benchmarks, then cmd/bench (the service as its own process under wrk, on PostgreSQL and
## SQLite), which writes BENCHMARKS.md. Takes about 10 minutes; not part of `make test`.
GOBENCH := $(or $(TMPDIR),/tmp)/apikeys-gobench-$(shell id -u).txt
BENCHBIN := $(or $(TMPDIR),/tmp)/apikeys-benchbin-$(shell id -u)
bench: bench-tools
	@bash -o pipefail -c "$(GO) test -run '^$$' -bench . -benchmem -count=1 ./... 2>&1 | tee $(GOBENCH)"
	$(GO) build -o $(BENCHBIN) ./cmd/bench
	$(BENCHBIN) -out BENCHMARKS.md -gobench $(GOBENCH)

## bench-tools: install the load generator, Debian's wrk, when it is missing
bench-tools:
	@command -v wrk >/dev/null || { echo 'bench: installing wrk'; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
