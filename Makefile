# ory-ext-authz. Everything a target needs is built or fetched by the target
# itself: Go code through the Go module proxy, Debian packages through
# apt-get (debian-packages); nothing is installed by hand.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
KRATOS_BIN  := $(CURDIR)/bin/kratos
CADDY_BIN   := $(CURDIR)/bin/caddy
# Pinned tools, run with `go run module@version`.
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
BUF           := github.com/bufbuild/buf/cmd/buf@v1.75.0
# gotestsum runs go test and ends with a summary that lists every skipped
# test with its reason (the Envoy end-to-end test without ENVOY_BIN).
GOTESTSUM     := gotest.tools/gotestsum@v1.13.0
GHZ           := github.com/bojand/ghz/cmd/ghz@v0.120.0
# Prometheus' promtool, pinned: validates deploy/prometheus and a real
# /metrics scrape (cmd/ory-ext-authz TestObservabilityScrape, PROMTOOL_BIN).
PROMTOOL      := github.com/prometheus/prometheus/cmd/promtool@v0.316.0
PROMTOOL_BIN  := $(CURDIR)/bin/promtool
HELM          := helm.sh/helm/v4/cmd/helm@v4.3.1
CHART         := deploy/helm/ory-ext-authz
# Debian packages the tests need (redis-server: pkg/redistier's tests start
# their own servers; nginx: the forward-auth tests run the real nginx on
# deploy/nginx/nginx.conf through internal/proxytest; chromium: the browser
# test of the make run demo, internal/cmd/devenv, drives it headless with
# chromedp). Tests start their own
# processes on free loopback ports with their own config, pid file and temp
# directories; a system service a package would start on install (nginx on
# port 80) is stopped and disabled right after installing it.
# `make debian-packages` installs the missing ones as root on Debian, or
# names the command to run.
DEBIAN_PACKAGES := redis-server nginx chromium
# Packages whose system service debian-packages stops and disables after
# installing them (Debian's nginx starts one on port 80 where an init
# system lets it).
DEBIAN_NO_SERVICE := nginx
# How long make test soaks pkg/authz (TestSoak; plain go test skips it).
SOAK        ?= 2m
# How long `make test` fuzzes each target; `make fuzz` fuzzes longer.
FUZZTIME    ?= 20s
FUZZTIME_LONG ?= 5m

.PHONY: build kratos caddy debian-packages test fuzz lint fmt vet run clean proto proto-check bench promtool alerts-check dashboard helm-package helm-schema

build: ## build bin/ory-ext-authz
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ory-ext-authz ./cmd/ory-ext-authz

# The real Ory Kratos v1.3.1, built from the module pinned in deploy/kratos
# (3-4 minutes on a fresh machine). Make skips it while the binary is newer
# than the pin.
kratos: $(KRATOS_BIN)
$(KRATOS_BIN): deploy/kratos/go.mod deploy/kratos/go.sum
	@echo "building Kratos v1.3.1 from the Go module proxy (3-4 minutes on a fresh machine)"
	cd deploy/kratos && CGO_ENABLED=1 $(GO) build -tags sqlite \
		-ldflags '-X github.com/ory/kratos/driver/config.Version=v1.3.1' \
		-o $(KRATOS_BIN) github.com/ory/kratos
	@touch $(KRATOS_BIN)

# The real Caddy v2.11.9, built from the module pinned in deploy/caddy
# (5-9 minutes on a fresh machine) for the forward-auth tests
# (internal/proxytest). Make skips it while the binary is newer than the pin.
caddy: $(CADDY_BIN)
$(CADDY_BIN): deploy/caddy/go.mod deploy/caddy/go.sum
	@echo "building Caddy v2.11.9 from the Go module proxy (5-9 minutes on a fresh machine)"
	cd deploy/caddy && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags '-X github.com/caddyserver/caddy/v2.CustomVersion=v2.11.9' \
		-o $(CADDY_BIN) github.com/caddyserver/caddy/v2/cmd/caddy
	@touch $(CADDY_BIN)

# Installs the missing DEBIAN_PACKAGES: apt-get as root on Debian; anywhere
# else it fails and prints the command to run.
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		if ! dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed'; then missing="$$missing $$p"; fi; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$$missing"; \
	if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
		for p in $(DEBIAN_NO_SERVICE); do \
			case " $$missing " in *" $$p "*) ;; *) continue ;; esac; \
			echo "stopping and disabling the system service $$p (tests run their own)"; \
			if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl stop "$$p" || true; \
			elif [ -x "/etc/init.d/$$p" ]; then "/etc/init.d/$$p" stop || true; fi; \
			if command -v systemctl >/dev/null; then systemctl disable "$$p" || true; fi; \
			if command -v update-rc.d >/dev/null; then update-rc.d "$$p" disable || true; fi; \
		done; \
	else \
		echo "missing Debian packages:$$missing; install them with:" >&2; \
		echo "  sudo sh -c '$$cmd'" >&2; \
		exit 1; \
	fi

# The whole suite: vet, format and generated-code checks, a bounded run of
# every fuzz target, then every test under -race against the real Kratos,
# a real redis-server, the real nginx and Caddy (internal/proxytest) and a
# real headless Chromium (internal/browsertest), none of which can be
# skipped here, ending with gotestsum's summary of skipped tests. The
# browser test's screenshots go to test-output/browser/.
test: kratos caddy debian-packages vet fmt proto-check alerts-check helm-package
	$(MAKE) --no-print-directory fuzz FUZZTIME_LONG=$(FUZZTIME)
	KRATOS_BIN=$(KRATOS_BIN) CADDY_BIN=$(CADDY_BIN) ORY_EXT_AUTHZ_REQUIRE_KRATOS=1 ORY_EXT_AUTHZ_REQUIRE_REDIS=1 \
		ORY_EXT_AUTHZ_REQUIRE_NGINX=1 ORY_EXT_AUTHZ_REQUIRE_CADDY=1 ORY_EXT_AUTHZ_REQUIRE_CHROMIUM=1 \
		ORY_EXT_AUTHZ_TEST_OUTPUT=$(CURDIR)/test-output PROMTOOL_BIN=$(PROMTOOL_BIN) ORY_EXT_AUTHZ_REQUIRE_PROMTOOL=1 \
		$(GO) run $(GOTESTSUM) --format pkgname -- -race -count=1 -timeout 30m ./...
	@# The soak on its own, after the rest: 2 minutes at 800 checks/s would
	@# starve the timing-sensitive real-Kratos and Redis-fault tests of CPU
	@# if it ran next to them (go test runs packages in parallel).
	ORY_EXT_AUTHZ_SOAK=$(SOAK) $(GO) run $(GOTESTSUM) --format pkgname -- -race -count=1 -timeout 10m -run '^TestSoak$$' ./pkg/authz

# bin/promtool, installed from the pinned module (about 5 minutes the first
# time, seconds once the build cache holds it).
promtool:
	GOBIN=$(CURDIR)/bin $(GO) install $(PROMTOOL)

# The alerting rules: promtool's syntax and lint check, then the unit tests
# in deploy/prometheus/alerts_test.yaml (synthetic series, which alert fires
# when). The dashboard's and the rules' PromQL against a real /metrics
# scrape, and promtool check metrics on that scrape, are Go tests
# (cmd/ory-ext-authz TestObservabilityScrape), run by make test with PROMTOOL_BIN.
alerts-check: promtool
	$(PROMTOOL_BIN) check rules deploy/prometheus/alerts.yaml
	$(PROMTOOL_BIN) test rules deploy/prometheus/alerts_test.yaml

# The Helm chart through the real helm (pinned): lint --strict, then
# helm package into test-output/helm/. The Go tests (deploy/helm_test.go)
# render it with Helm's SDK and check every manifest.
helm-package:
	$(GO) run $(HELM) lint --strict --kube-version 1.33.0 $(CHART)
	mkdir -p test-output/helm
	$(GO) run $(HELM) package $(CHART) -d test-output/helm

# Regenerates the chart's values.schema.json from the flag table
# (internal/helmschema); a test fails when the committed file is stale.
helm-schema:
	$(GO) run ./internal/cmd/helmschema

# Regenerates the Grafana dashboard from its Go builder (internal/dashboard);
# a test fails when the committed JSON differs from what it generates.
dashboard:
	$(GO) run ./internal/cmd/dashboard -o deploy/grafana/ory-ext-authz.json

# Every Fuzz* target, one at a time (go test -fuzz takes one target per run).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME_LONG))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME_LONG) $$pkg; \
		done; \
	done

# Generated code is committed; `make proto` regenerates it with pinned
# tools (buf, protoc-gen-go, protoc-gen-go-grpc, all through go run).
proto:
	$(GO) run $(BUF) lint
	$(GO) run $(BUF) generate

# Fails when regenerating would change the committed code.
proto-check:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; 	$(GO) run $(BUF) lint; 	$(GO) run $(BUF) generate -o "$$tmp"; 	if ! diff -r -x '*.proto' "$$tmp/proto" proto; then 		echo "generated code under proto/ is stale: run make proto and commit"; exit 1; 	fi

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Also fails when a tracked file is an executable binary or over 1 MiB
# (generated protobuf code aside): internal/cmd/repocheck.
lint: vet fmt
	$(GO) run ./internal/cmd/repocheck
	$(GO) run $(GOLANGCI_LINT) run ./...

# The local demo: Kratos, a demo identity logged in through the browser flow,
# ory-ext-authz serving against it and one check, then the browser demo on
# http://127.0.0.1:8080/ (Caddy's forward_auth in front of a demo app and a
# self-service UI, internal/demo); Ctrl-C stops everything.
run: build kratos caddy
	$(GO) run ./internal/cmd/devenv --kratos $(KRATOS_BIN) --caddy $(CADDY_BIN) --server bin/ory-ext-authz

# Performance harness: the server against a no-op baseline over loopback
# gRPC with ghz (pinned), warm with and without a route table (a CEL policy
# and identity headers), a cold start, expiry under load, memory per cached
# session, the hit-path Go benchmarks, and many replicas sharing a
# redis-server (debian-packages); one markdown table on stdout.
# About 8 minutes; only 127.0.0.1 is used.
bench: build debian-packages
	$(GO) run ./internal/bench/cmd/bench --server bin/ory-ext-authz --ghz $(GHZ)

# Build output, dev state, and what test and profiling runs leave behind.
clean:
	rm -rf bin .dev
	find . -path ./.git -prune -o -type f \( -name '*.test' -o -name '*.out' -o -name '*.prof' \) -print -delete
