# estkit: `make demo` runs the main job on a built-in corpus, `make test` runs
# every test. Both need only the Go toolchain (see README.md).

GO          ?= go
BIN         := bin/estkit
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO        := .demo
BENCHTIME   ?= 1x
BENCHCOUNT  ?= 10
BENCH       ?= .
BENCH_MAX_LOAD ?= 0.5
FUZZTIME    ?= 20s
BENCH_TEXT_MB ?= 50

REFS        := $(CURDIR)/.cache/ref
# Matrix products through OpenBLAS (Debian's libopenblas-dev, installed by
# `make blas` when missing). TAGS= builds the pure-Go fallback.
TAGS        ?= openblas

PREFIX      ?= /usr/local

# The version and commit estkit --version prints, stamped into every
# estkit binary the Makefile builds (Go's own VCS stamping is off where
# -buildvcs=false); "unknown" where git or the repository is missing,
# never a failed build. make VERSION=1.2.3 overrides.
VERSION     := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
REVISION    := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
STAMP       := -X main.version=$(VERSION) -X main.revision=$(REVISION)

.PHONY: all build install blas minio demo experiment experiment-horizon test hygiene lint vet fmt-check unit race refs node sentencepiece bench fuzz fixtures clean cuda cuda-deps cuda-ptx device-check mpi mpi-deps mpi-test cuda-mpi

all: build

build: blas
	$(GO) build -tags '$(TAGS)' -ldflags '$(STAMP)' -o $(BIN) ./cmd/estkit

# estkit, and estkit-cuda when make cuda has built it, into PREFIX/bin
# (DESTDIR for staging): estkit runs --device cuda in the estkit-cuda
# beside it, so the two go together.
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/estkit
	@if [ -e bin/estkit-cuda ]; then install -m 0755 bin/estkit-cuda $(DESTDIR)$(PREFIX)/bin/estkit-cuda && echo "installed estkit and estkit-cuda in $(DESTDIR)$(PREFIX)/bin"; \
	else echo "installed estkit in $(DESTDIR)$(PREFIX)/bin, without CUDA (make cuda install adds estkit-cuda)"; fi

# OpenBLAS headers and library for the cgo matrix products.
blas:
	@if [ "$(TAGS)" = openblas ] && ! [ -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev; \
	  else echo "libopenblas-dev is needed (sudo apt-get install -y libopenblas-dev), or build the pure-Go fallback: make TAGS="; exit 1; fi; \
	fi

# The main job on the built-in default corpus (samples drawn from the Go
# toolchain's own sources, laid out in every supported format): ingest, then
# shard into GPT-2 token shards (each twice: the second run reuses the
# output), show one training sequence with its lineage, train a tiny GPT-2
# with the paper's EST schedule compressed to 150 steps (per-stage FLOPs
# saved and loss at the end), and sample from it.
demo: build
	rm -rf $(DEMO)
	$(BIN) samples --out $(DEMO)/samples
	$(BIN) ingest --out $(DEMO)/docs $(DEMO)/samples
	$(BIN) ingest --out $(DEMO)/docs $(DEMO)/samples
	$(BIN) inspect $(DEMO)/docs
	$(BIN) inspect $(DEMO)/docs --doc 0 --json | head -c 600; echo
	$(BIN) shard --tokenizer gpt2 --val-fraction 0.02 --out $(DEMO)/tok $(DEMO)/docs
	$(BIN) shard --tokenizer gpt2 --val-fraction 0.02 --out $(DEMO)/tok $(DEMO)/docs
	$(BIN) inspect $(DEMO)/tok --seq 0 --seq-len 48
	$(BIN) train --preset gpt2-tiny --data $(DEMO)/tok --out $(DEMO)/run --steps 150 --batch 4 --seq 64 \
	  --lr 2e-3 --warmup 10 --est est-gpt2 --eval-every 50
	$(BIN) sample --run $(DEMO)/run --prompt "package main" --tokens 40

# The EST experiment (docs/EXPERIMENTS.md; not part of make test; about an
# hour on 2 cores): builds a corpus from GOROOT/src, trains the
# runs and rewrites the report and its plots from their records.
# EXPERIMENT_FLAGS=-scale 0.02 is a smoke run; -report-only redraws it.
experiment: build
	$(GO) run -tags '$(TAGS)' ./internal/experiment -estkit $(BIN) -work .experiment -report docs/EXPERIMENTS.md -plots docs/experiments $(EXPERIMENT_FLAGS)

# The horizon study (docs/EXPERIMENTS.md, its last section; not part of
# make test; about an hour on 2 quiet cores): EST against full training at
# 0.5M, 2M and 8M tokens. Finished runs are reused and interrupted ones
# resumed, so EXPERIMENT_FLAGS='-horizons 0.5,2,8,32' extends it;
# EXPERIMENT_FLAGS=-scale 0.01 is a smoke run, -report-only redraws it.
experiment-horizon: build
	$(GO) run -tags '$(TAGS)' ./internal/experiment -study horizon -estkit $(BIN) -work .experiment -report docs/EXPERIMENTS.md -plots docs/experiments $(EXPERIMENT_FLAGS)

test: hygiene fmt-check vet lint unit mpi-test

# No tracked file over 1 MB outside testdata/ and the committed PTX (a
# build output committed by accident once: a 66 MB binary at the root).
hygiene:
	@big=$$(git ls-files -z 2>/dev/null | xargs -0 -r stat -c '%s %n' 2>/dev/null | \
	  awk '$$1 > 1048576 && $$2 !~ /(^|\/)testdata\// && $$2 != "kernels/cuda/kernels.ptx" {print $$2 " (" $$1 " bytes)"}'); \
	if [ -n "$$big" ]; then echo "tracked files over 1 MB outside testdata/ (build outputs? remove them and ignore them):"; echo "$$big"; exit 1; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: blas
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet ./...
	$(GO) vet -tags cudaemu ./kernels/cuda ./train ./cmd/estkit

lint: blas
	$(GO) run $(STATICCHECK) -tags '$(TAGS)' ./...
	$(GO) run $(STATICCHECK) -tags cudaemu ./kernels/cuda

unit: refs blas minio
	ESTKIT_REFS=$(REFS) ESTKIT_REQUIRE_REFS=1 ESTKIT_REQUIRE_MINIO=1 $(GO) test -tags '$(TAGS)' -count=1 ./...
	$(GO) test -count=1 ./kernels/... ./train  # the pure-Go fallback too
	# OpenBLAS's Haswell kernels (those of every AVX2 CPU), whose sums
	# depend on where a product is cut, where the machine has not named a
	# core table already: the bits must not depend on the workers there
	OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(GO) test -tags '$(TAGS)' -count=1 \
	  -run 'WorkersBitExact|MatMulConcurrent|StepBitsIndependentOfWorkers|Sampled|Scatter|BackendsAgree' ./kernels/cpu ./train
	# the CUDA backend's kernels and launches, on the CPU emulator; then the
	# kernels again under AddressSanitizer (every buffer its own
	# allocation: a read or write past one fails)
	$(GO) test -tags cudaemu -count=1 ./kernels/cuda
	$(GO) test -tags cudaemu -count=1 -run 'BackendsAgree|BF16WeightsFollow|ResumeIsExactBF16|DeviceMemory|StagedBatches|GPUCLI|TrainDeviceCLI' ./train ./cmd/estkit
	ASAN_OPTIONS=detect_leaks=0 CGO_CXXFLAGS='-O1 -fsanitize=address' $(GO) test -asan -tags cudaemu -count=1 -run Conformance ./kernels/cuda

# Data-parallel training over MPI (docs/SCALING.md): OpenMPI from Debian
# (openmpi-bin, libopenmpi-dev), installed by mpi-deps when missing, and
# bin/estkit-mpi, estkit built with the mpi tag (the default build has no
# MPI). mpi-test runs the MPI binding's and training's tests under
# mpirun (as root with --allow-run-as-root, which the tests pass), and
# compiles the NCCL path with the CUDA emulator (its test runs it there
# without a libnccl: each rank must name the missing library).
mpi-deps:
	@if ! command -v mpirun >/dev/null || ! pkg-config --exists ompi-c 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev pkg-config; \
	  else echo "OpenMPI is needed: sudo apt-get install -y openmpi-bin libopenmpi-dev pkg-config"; exit 1; fi; \
	fi

mpi: mpi-deps blas
	$(GO) build -tags '$(TAGS) mpi' -ldflags '$(STAMP)' -o bin/estkit-mpi ./cmd/estkit

mpi-test: mpi-deps blas
	$(GO) vet -tags '$(TAGS) mpi' ./internal/mpi ./train ./cmd/estkit
	$(GO) vet -tags '$(TAGS) mpi cudaemu' ./kernels/cuda ./cmd/estkit
	$(GO) test -tags '$(TAGS) mpi' -count=1 ./internal/mpi
	$(GO) test -tags '$(TAGS) mpi' -count=1 -timeout 20m -run 'TestMPI' ./cmd/estkit

# mpi-bench (not part of bench: run it on a quiet machine) times, on
# RANKS local ranks (default 2, one OpenBLAS thread each), the all-reduce
# of GPT-2 124M's gradients alone and a GPT-2 124M step (B=1, T=64; B from
# ESTKIT_BENCH_B) with no reduction, with it after the backward pass and
# with it behind the backward pass (--overlap-reduce): BenchmarkMPIReduce.
# A fixed iteration count, since every rank must run the same collectives.
.PHONY: mpi-bench
mpi-bench: mpi-deps blas
	$(GO) test -tags '$(TAGS) mpi' -c -o bin/train-mpi.test ./train
	mpirun --oversubscribe $$([ "$$(id -u)" = 0 ] && echo --allow-run-as-root) -np $(or $(RANKS),2) \
	  -x OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} -x ESTKIT_BENCH_B=$${ESTKIT_BENCH_B:-1} \
	  bin/train-mpi.test -test.run '^$$' -test.bench BenchmarkMPIReduce -test.benchtime 5x -test.count 3

# MinIO, the S3-compatible server the object storage tests start on the
# loopback address (internal/store/s3test), built from the Go module proxy
# into .cache/bin when missing: about 4 minutes on 2 cores, once per
# machine (make clean removes it). make test requires it
# (ESTKIT_REQUIRE_MINIO=1): without it those tests fail rather than skip.
MINIO := $(CURDIR)/.cache/bin/minio
# the release tried here (a pinned version: CI tests against that server)
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c

minio: $(MINIO)

$(MINIO):
	mkdir -p $(CURDIR)/.cache/bin
	GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# Reference ids for the tokenizer exactness tests: the corpus from a checked-in
# generator, the ids from the reference tokenizers (tiktoken, from npm, run
# by node). Needs node and npm (Debian: apt-get install nodejs npm).
refs: $(REFS)/gpt2.jsonl $(REFS)/llama2.jsonl $(REFS)/llama2-decode.jsonl $(REFS)/hf-gpt2.jsonl $(REFS)/hf-llama2.jsonl

$(REFS)/corpus.jsonl: tokenize/internal/refcorpus/main.go ingest/corpusgen/corpusgen.go
	mkdir -p $(REFS)
	$(GO) run ./tokenize/internal/refcorpus > $@.tmp && mv $@.tmp $@

$(REFS)/gpt2.jsonl: $(REFS)/corpus.jsonl tokenize/testdata/ref/gpt2.mjs tokenize/testdata/ref/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || $(MAKE) node
	cd tokenize/testdata/ref && npm ci --no-audit --no-fund --silent
	node tokenize/testdata/ref/gpt2.mjs < $(REFS)/corpus.jsonl > $@.tmp && mv $@.tmp $@

$(REFS)/llama2.model: tokenize/testdata/ref/llama2-model.mjs tokenize/testdata/ref/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || $(MAKE) node
	mkdir -p $(REFS)
	cd tokenize/testdata/ref && npm ci --no-audit --no-fund --silent
	node tokenize/testdata/ref/llama2-model.mjs $@.tmp && mv $@.tmp $@

$(REFS)/llama2-decode.jsonl: $(REFS)/llama2.model tokenize/testdata/ref/llama2_decode.py
	@/usr/bin/python3 -c "import sentencepiece" 2>/dev/null || $(MAKE) sentencepiece
	/usr/bin/python3 tokenize/testdata/ref/llama2_decode.py $(REFS)/llama2.model > $@.tmp && mv $@.tmp $@

# Debian's python3-sentencepiece is for Debian's own python3 (/usr/bin).
$(REFS)/llama2.jsonl: $(REFS)/corpus.jsonl $(REFS)/llama2.model tokenize/testdata/ref/llama2.py
	@/usr/bin/python3 -c "import sentencepiece" 2>/dev/null || $(MAKE) sentencepiece
	/usr/bin/python3 tokenize/testdata/ref/llama2.py $(REFS)/llama2.model < $(REFS)/corpus.jsonl > $@.tmp && mv $@.tmp $@

# Hugging Face tokenizer.json files built by checked-in converters (GPT-2's
# from tiktoken's ranks, Llama 2's from tokenizer.model as Hugging Face's Llama
# converter lays it out), and their reference ids from the tokenizer library
# of transformers.js (@huggingface/tokenizers).
$(REFS)/gpt2-tokenizer.json: tokenize/testdata/ref/gpt2-tokenizer-json.mjs tokenize/testdata/ref/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || $(MAKE) node
	mkdir -p $(REFS)
	cd tokenize/testdata/ref && npm ci --no-audit --no-fund --silent
	node tokenize/testdata/ref/gpt2-tokenizer-json.mjs > $@.tmp && mv $@.tmp $@

$(REFS)/llama2-tokenizer.json: $(REFS)/llama2.model tokenize/testdata/ref/llama2-tokenizer-json.py
	@/usr/bin/python3 -c "import sentencepiece" 2>/dev/null || $(MAKE) sentencepiece
	/usr/bin/python3 tokenize/testdata/ref/llama2-tokenizer-json.py $(REFS)/llama2.model > $@.tmp && mv $@.tmp $@

$(REFS)/hf-%.jsonl: $(REFS)/%-tokenizer.json $(REFS)/corpus.jsonl tokenize/testdata/ref/hf.mjs
	node tokenize/testdata/ref/hf.mjs $(REFS)/$*-tokenizer.json < $(REFS)/corpus.jsonl > $@.tmp && mv $@.tmp $@

# The tests under the race detector (needs cgo and gcc); CI runs it.
race: refs blas
	ESTKIT_REFS=$(REFS) $(GO) test -tags '$(TAGS)' -race -short -count=1 ./...

# Benchmarks with their anchors measured in the same run; prints one table
# of medians (docs/PERF.md, "How to run"). BENCHCOUNT rounds; in each, every
# top-level benchmark BENCH selects (a -bench regexp) runs once (BENCHTIME
# 1x: one iteration of seconds) and right after it its anchors (tiktoken,
# C++ SentencePiece, PyTorch's GPT-2 and Llama steps, and for a training
# step the backend's sgemm, the denominator of its MFU), so that each pair
# sits close in time. internal/benchtable/rounds.sh records around each
# the load average and the CPU that other work used, and benchtable leaves
# out of every figure the rounds in which other work kept more than
# BENCH_MAX_LOAD cores busy. A full run is about 15 minutes a round on 2
# cores (ESTKIT_BENCH_T1024=0 leaves the T=1024 steps out); one pair:
# make bench BENCH='GPT2Step/124m/B=4,T=64' ESTKIT_BENCH_T1024=0 BENCHCOUNT=5.
# The object storage benchmarks (LoaderS3, ShardS3, IngestS3,
# RunDataWaitS3) start the MinIO that make minio builds.
bench: refs blas minio
	$(GO) run ./tokenize/internal/refcorpus -bench $(REFS)/bench -mb $(BENCH_TEXT_MB)
	GO='$(GO)' TAGS='$(TAGS)' BENCH='$(BENCH)' BENCHTIME='$(BENCHTIME)' BENCHCOUNT='$(BENCHCOUNT)' \
	  REFS='$(REFS)' BENCH_WORK='$(CURDIR)/.cache/bench' sh internal/benchtable/rounds.sh 2>&1 | tee $(DEMO)-bench.txt
	$(GO) run ./internal/benchtable -max-load '$(BENCH_MAX_LOAD)' < $(DEMO)-bench.txt

# A short coverage-guided run of every fuzz target.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The PyTorch fixtures of the trainer tests (committed; CI does not run
# this). Needs Debian's python3-torch.
fixtures:
	@/usr/bin/python3 -c "import torch" 2>/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch; }
	cd train && /usr/bin/python3 testdata/gpt2_ref.py testdata
	cd train && /usr/bin/python3 testdata/llama_ref.py testdata

sentencepiece:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-sentencepiece; \
	else echo "python3-sentencepiece is needed for the Llama 2 references: sudo apt-get install -y python3-sentencepiece"; exit 1; fi

# node and npm from Debian when missing (as root; otherwise says what to run).
node:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	else echo "node and npm are needed for the tokenizer references: sudo apt-get install -y nodejs npm"; exit 1; fi

# The CUDA backend (kernels/cuda). Debian's CUDA 11.8 from contrib and
# non-free, enabled and installed by cuda-deps when missing: headers, the
# driver's stub library to link against (the real one comes with the
# driver on a GPU machine) and nvcc. No GPU is needed to build. The headers
# must be CUDA 12 or older: gorgonia.org/cu v0.9.6 does not compile against
# CUDA 13's (the binary still runs on CUDA 13 drivers).
CUDA_STUBS  := /usr/lib/x86_64-linux-gnu/stubs
NVCC        ?= nvcc
NVCC_FLAGS  := -ptx -arch=compute_80 -O3
CUDA_ENV    := CGO_LDFLAGS=-L$(CUDA_STUBS)
DEVICE_DIR  := dist/device-check

cuda-deps:
	@if ! [ -e /usr/include/cuda.h -a -e /usr/include/cublas_v2.h -a -e $(CUDA_STUBS)/libcuda.so ] || ! command -v $(NVCC) >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "CUDA 11.8 from Debian is needed: enable contrib and non-free, then apt-get install nvidia-cuda-dev nvidia-cuda-toolkit"; exit 1; fi; \
	  for f in /etc/apt/sources.list.d/debian.sources; do [ -e $$f ] && sed -i -E 's/^Components: main$$/Components: main contrib non-free/' $$f; done; \
	  [ -e /etc/apt/sources.list ] && sed -i -E 's/^(deb [^#]* main)$$/\1 contrib non-free/' /etc/apt/sources.list; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nvidia-cuda-dev nvidia-cuda-toolkit; \
	fi

# Regenerates the committed outputs of kernels.cu: the PTX the cuda build
# embeds, and the emulator's launch table and the kernels' signatures.
cuda-ptx: cuda-deps
	cd kernels/cuda && $(NVCC) $(NVCC_FLAGS) -o kernels.ptx kernels.cu && $(GO) generate .

# Builds what users install, bin/estkit and bin/estkit-cuda (the cuda
# build, which estkit runs for --device cuda: gorgonia.org/cu ends a
# process at start-up where there is no GPU), and the GPU test binaries,
# after checking that the committed PTX and tables are kernels.cu's and
# that ptxas assembles every kernel for sm_80 and sm_90 without spilling
# registers; then checks that the pair starts on this machine, GPU or not,
# and hands --device cuda over as specified (CI runs it).
cuda: cuda-deps build
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && cd kernels/cuda && \
	$(NVCC) $(NVCC_FLAGS) -o $$tmp/kernels.ptx kernels.cu && $(GO) run ./internal/gen -out $$tmp && \
	for f in kernels.ptx emu_table.inc sigs.go; do cmp -s $$tmp/$$f $$f || { echo "kernels/cuda/$$f is stale: run make cuda-ptx"; exit 1; }; done && \
	for arch in sm_80 sm_90; do \
	  $(NVCC) -cubin -arch=$$arch -O3 -Xptxas -v -o $$tmp/k.cubin kernels.cu 2> $$tmp/ptxas.txt || { cat $$tmp/ptxas.txt; exit 1; }; \
	  if grep -E '[1-9][0-9]* bytes spill' $$tmp/ptxas.txt; then echo "kernels/cuda: a kernel spills registers on $$arch (nvcc -Xptxas -v)"; exit 1; fi; \
	done
	$(CUDA_ENV) $(GO) vet -tags cuda ./kernels/cuda ./train ./cmd/estkit
	@if pkg-config --exists ompi-c 2>/dev/null; then echo "$(GO) vet -tags 'cuda mpi' ./cmd/estkit"; $(CUDA_ENV) $(GO) vet -tags 'cuda mpi' ./cmd/estkit; \
	else echo "make cuda: no OpenMPI here (make mpi-deps), so the cuda mpi build (make cuda-mpi) is not compiled"; fi
	$(CUDA_ENV) $(GO) run $(STATICCHECK) -tags cuda ./kernels/cuda
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '$(STAMP)' -o bin/estkit-cuda ./cmd/estkit
	$(CUDA_ENV) $(GO) test -tags cuda -c -ldflags '-s -w' -o bin/cuda.test ./kernels/cuda
	$(CUDA_ENV) $(GO) test -tags cuda -c -ldflags '-s -w' -o bin/train-cuda.test ./train
	$(CUDA_ENV) ESTKIT_REQUIRE_CUDA_BUILD=1 $(GO) test -tags '$(TAGS)' -count=1 -run 'TestCUDABuild|TestHandOff' ./cmd/estkit
	$(GO) test -tags '$(TAGS)' -count=1 -run 'TestProbe' ./kernels/cuda

# estkit-mpi and estkit-cuda-mpi, the CUDA build with MPI, which
# estkit-mpi runs for --device cuda: mpirun -np N bin/estkit-mpi train
# --device cuda ... trains data parallel, each rank on the GPU of its local
# rank, averaging the gradients with NCCL (loaded at run time:
# libnccl.so.2, or ESTKIT_NCCL's path; docs/SCALING.md, "NCCL on GPUs").
cuda-mpi: cuda-deps mpi
	$(CUDA_ENV) $(GO) build -tags 'cuda mpi' -ldflags '$(STAMP)' -o bin/estkit-cuda-mpi ./cmd/estkit

# Everything a GPU machine (driver, CUDA libraries, PyTorch; no Go) needs
# for the device check, in one folder of about 70 MB (the binaries
# gzipped, GPT-2 token shards of a few MB, 30 MB of benchmark English
# gzipped): there, $(DEVICE_DIR)/run.sh runs the conformance suite, the
# CPU-against-GPU training check, the per-op timing table and a short EST
# run of GPT-2 124M through estkit --device cuda (estkit and estkit-cuda
# side by side, as installed; estkit without OpenBLAS, which the GPU
# machine may lack), then estkit shard's scaling over the machine's CPU
# cores, which no development machine (2 cores) can show (docs/PERF.md);
# each step has a time limit, all of them together under 8 minutes.
device-check: cuda build
	rm -rf $(DEVICE_DIR) && mkdir -p $(DEVICE_DIR)
	$(BIN) -q samples --out $(DEVICE_DIR)/work/samples --bytes 3000000
	$(BIN) -q ingest --out $(DEVICE_DIR)/work/docs $(DEVICE_DIR)/work/samples
	$(BIN) -q shard --tokenizer gpt2 --val-fraction 0.02 --out $(DEVICE_DIR)/tok $(DEVICE_DIR)/work/docs
	$(GO) run ./tokenize/internal/refcorpus -bench $(DEVICE_DIR)/work/bench -mb 30
	gzip -c $(DEVICE_DIR)/work/bench/english.jsonl > $(DEVICE_DIR)/english.jsonl.gz
	rm -rf $(DEVICE_DIR)/work
	$(GO) test -c -ldflags '-s -w' -o $(DEVICE_DIR)/shards.test ./shards && gzip $(DEVICE_DIR)/shards.test
	cp bin/cuda.test kernels/cuda/devicecheck/run.sh kernels/cuda/devicecheck/report.py $(DEVICE_DIR)/
	gzip -c bin/train-cuda.test > $(DEVICE_DIR)/train-cuda.test.gz
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '-s -w $(STAMP)' -o $(DEVICE_DIR)/estkit-cuda ./cmd/estkit && gzip $(DEVICE_DIR)/estkit-cuda
	$(GO) build -ldflags '-s -w $(STAMP)' -o $(DEVICE_DIR)/estkit ./cmd/estkit && gzip $(DEVICE_DIR)/estkit
	@echo "device check ready: run $(DEVICE_DIR)/run.sh on the GPU machine"

clean:
	rm -rf bin dist $(DEMO) $(DEMO)-bench.txt .cache tokenize/testdata/ref/node_modules
