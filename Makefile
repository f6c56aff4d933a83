# Goldcard. `make run` starts a switch on its defaults; `make test` runs
# every test. Both bring up PostgreSQL first (.ci/ensure-postgres).

GO       ?= go
BIN      := bin/goldcard
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/goldcard/goldcard/switch/internal/daemon.version=$(VERSION)
# How long each fuzz target runs: FUZZTIME in `make fuzz`, FUZZSMOKE in
# `make test` (a count of inputs, not a time: a time too short for a busy
# machine to start the fuzzer fails with "context deadline exceeded");
# FUZZFLAGS adds flags (e.g. -parallel=1 to leave cores free).
FUZZTIME  ?= 10m
FUZZSMOKE ?= 2000x
FUZZFLAGS ?=
# Every fuzz target, as package:Target.
FUZZ_TARGETS := ./iso:FuzzReadFrame ./iso:FuzzReadAndParse ./iso:FuzzParseRequest \
	./config:FuzzDecodeValue ./config:FuzzParseFile \
	./switch/internal/fixture:FuzzParse ./switch/internal/issuer:FuzzHandle

.PHONY: build run test bench fuzz db vet clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./switch

db:
	@.ci/ensure-postgres

run: build db
	./$(BIN) serve

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Runs each fuzz target for $(1), one after another (go test fuzzes one
# target at a time).
define fuzz-each
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; echo "fuzz $$fn ($$pkg) for $(1)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(1) $(FUZZFLAGS); \
	done
endef

test: db vet
	$(GO) test -race -count=1 -timeout 10m ./...
	$(call fuzz-each,$(FUZZSMOKE))

fuzz: db
	$(call fuzz-each,$(FUZZTIME))

# Benchmarks: in-process figures, then the switch end to end next to
# pgbench on the same PostgreSQL server.
bench: build db
	$(GO) test -run '^$$' -bench . -benchmem ./iso ./ledger ./switch/internal/issuer ./locks
	$(GO) test -count=1 -run '^TestHostileLinks$$' -v ./switch/internal/link -hostile.latency
	.ci/bench-e2e

clean:
	rm -rf bin var
