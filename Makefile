# estkit: `make demo` runs the main job on a built-in corpus, `make test` runs
# every test. Both need only the Go toolchain (see README.md).

GO          ?= go
BIN         := bin/estkit
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO        := .demo
BENCHTIME   ?= 1x
BENCHCOUNT  ?= 10
FUZZTIME    ?= 20s

.PHONY: all build demo test lint vet fmt-check unit race bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/estkit

# The main job on the built-in default corpus (samples drawn from the Go
# toolchain's own sources, laid out in every supported format). The trainer
# issue extends this to shard and train.
demo: build
	rm -rf $(DEMO)
	$(BIN) samples --out $(DEMO)/samples
	$(BIN) ingest --out $(DEMO)/docs $(DEMO)/samples
	$(BIN) ingest --out $(DEMO)/docs $(DEMO)/samples
	$(BIN) inspect $(DEMO)/docs
	$(BIN) inspect $(DEMO)/docs --doc 0 --json | head -c 600; echo

test: fmt-check vet lint unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -count=1 ./...

# The tests under the race detector (needs cgo and gcc); CI runs it.
race:
	$(GO) test -race -short -count=1 ./...

# Benchmarks with their anchors measured in the same run; prints one table
# of medians (docs/PERF.md). BENCHCOUNT rounds, each a fresh `go test` of
# every benchmark once (BENCHTIME 1x: one iteration of seconds), so that each
# XIngest and its XBound run close in time whatever else the machine is
# doing; about 5 minutes on 2 cores. The load average is printed before and
# after: other work on the machine skews the figures.
bench:
	@echo "load average before: $$(cat /proc/loadavg 2>/dev/null)"
	for i in $$(seq $(BENCHCOUNT)); do \
	  $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 -timeout 30m ./... || echo "FAIL: round $$i"; \
	done 2>&1 | tee $(DEMO)-bench.txt
	@echo "load average after: $$(cat /proc/loadavg 2>/dev/null)"
	$(GO) run ./internal/benchtable < $(DEMO)-bench.txt

# A short coverage-guided run of every fuzz target.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin $(DEMO) $(DEMO)-bench.txt
