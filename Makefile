# Goldcard. `make run` starts a switch on its defaults; `make test` runs
# every test. Both bring up PostgreSQL first (.ci/ensure-postgres).

GO       ?= go
BIN      := bin/goldcard
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Seconds each fuzz target runs in `make fuzz`.
FUZZTIME ?= 30s

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

test: db vet
	$(GO) test -race -count=1 -timeout 10m ./...

fuzz: db
	$(GO) test ./iso -run '^$$' -fuzz FuzzReadAndParse -fuzztime $(FUZZTIME)

# Benchmarks: in-process figures, then the switch end to end next to
# pgbench on the same PostgreSQL server.
bench: build db
	$(GO) test -run '^$$' -bench . -benchmem ./iso ./switch ./locks
	.ci/bench-e2e

clean:
	rm -rf bin var
