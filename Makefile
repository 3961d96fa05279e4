# xpra-edge. Two commands do everything on a fresh Debian machine with Go:
#   make run    the proxy on embedded development defaults
#   make test   installs what the tests need, then checks that go.mod is tidy,
#               vet, staticcheck, race tests, end-to-end tests with real xpra,
#               fuzz smoke
GO        ?= go
BIN       := bin/xpra-edge
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/xpra-edge/xpra-edge/edge.Version=$(VERSION)
FUZZTIME  ?= 3s
export CGO_ENABLED := 1

.PHONY: all build run test deps tidy-check vet staticcheck unit fuzz-smoke fuzz bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/xpra-edge
	$(GO) build -o bin/xpra-edge-bench ./cmd/xpra-edge-bench

run: build
	./$(BIN) proxy --dev

deps:
	bash scripts/install-test-deps.sh

# go.mod and go.sum are what `go mod tidy` makes them (prints the diff).
tidy-check:
	$(GO) mod tidy -diff

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

# Every test, with the race detector. Peers (xpra, Xvfb, chromium, root)
# are required: a missing one fails the run instead of skipping.
unit:
	XPRA_EDGE_REQUIRE_PEERS=1 $(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -run 'Allocs' ./internal/xprawire ./internal/wsconn

# Each fuzz target for a short time, one at a time (see the script: a found
# input fails the run at once, an engine failure is retried once).
fuzz-smoke:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz-smoke.sh

fuzz:
	$(MAKE) fuzz-smoke FUZZTIME=2m

test: deps tidy-check vet staticcheck unit fuzz-smoke

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/xprawire/ ./internal/wsconn/
	$(GO) test -run '^$$' -bench 'Login' -benchmem ./auth/ ./fleet/
	./bin/xpra-edge-bench -out bench-results

clean:
	rm -rf bin .run bench-results
