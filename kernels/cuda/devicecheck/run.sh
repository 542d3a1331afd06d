#!/usr/bin/env bash
# The device check: run on a GPU machine (driver, CUDA libraries, PyTorch;
# no Go needed) from the folder `make device-check` fills, which holds
# estkit and estkit-cuda side by side as `make install` puts them. It runs
# the kernel conformance suite, NCCL on a communicator of one rank (the
# path of mpirun -np 1; skipped where the machine has no libnccl.so.2)
# and the CPU-against-GPU training check,
# times every op, measures the card's copy bandwidth and bf16 matrix rate
# with PyTorch, prints one table, then times 15 EST steps of GPT-2 124M
# through `estkit --device cuda` with fp32, with bf16 products, and with
# bf16 products and activations, and last estkit shard's scaling over the
# machine's CPU cores. Every step runs under a time limit (LIMITS below);
# the limits and their kill grace add up to at most BUDGET seconds, which
# the script checks before it starts, so that a run ends within 8 minutes
# whatever hangs. Logs go to $OUT (or this folder); times.txt says how
# long each step took. It exits non-zero when a check fails or a step
# runs out of time.
set -uo pipefail
cd "$(dirname "$0")"
out=${OUT:-.}
status=0

BUDGET=450 # seconds; 8 minutes less 30 s for unpacking and the reports
GRACE=3    # seconds from a step's SIGTERM to its SIGKILL
# name:seconds. gpu is the first start of the CUDA backend, when the driver
# compiles the kernels' PTX for the card (later starts read its cache).
LIMITS=(smi:10 gpu:60 conformance:50 nccl:15 train-check:45 bench:45 report:40 train-fp32:40 train-bf16:40 train-bf16-act:40 shard:32)
sum=0
for l in "${LIMITS[@]}"; do sum=$((sum + ${l#*:} + GRACE)); done
if [ "$sum" -gt "$BUDGET" ]; then
  echo "run.sh: the steps' time limits add up to $sum s, over the budget of $BUDGET s" >&2
  exit 2
fi
echo "device check: ${#LIMITS[@]} steps, at most $sum s" | tee "$out/times.txt"

limit() { for l in "${LIMITS[@]}"; do [ "${l%%:*}" = "$1" ] && echo "${l#*:}" && return; done; echo "run.sh: no limit for step $1" >&2; exit 2; }

# step NAME CMD...: runs CMD under NAME's limit, records its time, and
# says so on stderr when the limit ended it.
step() {
  local name=$1 t0=$SECONDS rc
  shift
  timeout -k "$GRACE" "$(limit "$name")" "$@"
  rc=$?
  echo "$name: $((SECONDS - t0)) s of $(limit "$name"), exit status $rc" >> "$out/times.txt"
  if [ $rc = 124 ] || [ $rc = 137 ]; then echo "$name: out of time after $(limit "$name") s" >&2; fi
  return $rc
}

for f in *.gz; do [ -e "$f" ] && gunzip -f "$f" && chmod +x "${f%.gz}"; done

step smi nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

# cuBLAS: the system's if the loader finds one, else the first found in
# the CUDA toolkit or a Python environment (PyTorch's wheels carry one)
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.1[123] '; then
  lib=$(find /usr/local /opt /usr/lib $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) \
    -name 'libcublas.so.1[123]' 2>/dev/null | sort -r | head -1)
  if [ -n "$lib" ]; then
    export ESTKIT_CUBLAS="$lib" LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
    echo "cuBLAS: $lib"
  fi
fi

# estkit hands gpu and --device cuda over to the estkit-cuda beside it
step gpu ./estkit gpu 2>&1 | tee "$out/backend.txt" || status=1
step conformance ./cuda.test -test.v -test.run 'Conformance' 2>&1 | tee "$out/conformance.txt" | grep -E '^\s*--- |^(ok|FAIL|PASS)|kernelstest|backend:' || true
grep -q '^--- FAIL' "$out/conformance.txt" && status=1
grep -q '^PASS' "$out/conformance.txt" || status=1
# NCCL, as mpirun -np 1 would run it: a communicator of one rank on the
# card, the gradient mean in fp32 and bf16 (TestNCCLOneRank), and the
# reducer's tests. libnccl.so.2 from the system, else from the CUDA
# toolkit or a Python environment (PyTorch's nvidia-nccl wheel); a machine
# with none skips it, and says so.
if ! ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2 '; then
  lib=$(find /usr/local /opt /usr/lib $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) \
    -name 'libnccl.so.2' 2>/dev/null | head -1)
  [ -n "$lib" ] && export ESTKIT_NCCL="$lib" && echo "NCCL: $lib"
fi
if ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2 ' || [ -n "${ESTKIT_NCCL:-}" ]; then
  step nccl env ESTKIT_REQUIRE_NCCL=1 ./cuda.test -test.v -test.run 'NCCL|Reducer' 2>&1 | tee "$out/nccl.txt" | grep -E '^\s*--- |^(ok|FAIL|PASS)' || true
  grep -q '^PASS' "$out/nccl.txt" || status=1
else
  echo "nccl: no libnccl.so.2 on this machine: the NCCL check did not run" | tee -a "$out/report.txt"
fi
step train-check ./train-cuda.test -test.v -test.run 'BackendsAgree|BF16WeightsFollow|DeviceMemory' 2>&1 | tee "$out/train.txt" | grep -E '^\s*--- |^(ok|FAIL|PASS)' || true
grep -q '^PASS' "$out/train.txt" || status=1
step bench ./cuda.test -test.run '^$' -test.bench 'Ops' -test.benchtime "${BENCHTIME:-20x}" 2>&1 | tee "$out/bench.txt" | grep -E 'FAIL|panic' || true
step report python3 report.py "$out/bench.txt" 2>&1 | tee "$out/report.txt" || status=1
# the device memory train.EstimateMemory counts against what the backend
# allocated (TestDeviceMemoryEstimate, in the train check)
grep -h 'on the device, the backend allocated' "$out/train.txt" | sed -E 's/^ *[a-z_]+_test\.go:[0-9]+: //' | tee -a "$out/report.txt"
# GPT-2 124M on the GPU, 5 steps at each of EST's three stage rates, with
# fp32, with bf16 matrix products and attention, and with those and bf16
# activations
if [ -d tok ]; then
  for mode in fp32 bf16 bf16-act; do
    mm=${mode%-act}; acts=fp32; [ "$mode" = bf16-act ] && acts=bf16
    run=$(mktemp -d)/run
    echo "GPT-2 124M, B=8, T=1024, --device cuda --matmul $mm --attention $mm --activations $acts" | tee -a "$out/report.txt"
    step "train-$mode" ./estkit -q --device cuda train --matmul "$mm" --attention "$mm" --activations "$acts" --preset gpt2-124m --data tok --out "$run" \
      --steps 15 --batch 8 --seq 1024 --warmup 2 --est-stages 5,10,15 --est-rates 0.5:0.5:0.5,0.5:0.5:1,1:1:1 \
      > "$out/train-$mode.txt" 2>&1 || { tail -20 "$out/train-$mode.txt"; status=1; }
    [ -e "$run/metrics.jsonl" ] && cp "$run/metrics.jsonl" "$out/metrics-$mode.jsonl" && python3 report.py --steps "$run/metrics.jsonl" | tee -a "$out/report.txt"
  done
fi
# estkit shard's scaling over this machine's CPU cores (the development
# machines have 2): ShardBuild with one worker per GOMAXPROCS against
# ShardBound (one goroutine's tokenizer rate × GOMAXPROCS), on the
# benchmark English repeated 4 times (about 120 MB, so that a build on
# many cores outlasts its fixed costs, and the whole fits the step's
# limit), once per core count. Its figures belong to issue 4, not to the
# GPU, and do not decide the status; what finishes within the limit is
# reported.
if [ -x shards.test ] && [ -e english.jsonl ]; then
  bench=$(mktemp -d)
  for i in 1 2 3 4; do cat english.jsonl; done > "$bench/english.jsonl"
  cpus=$(nproc); list=1; c=2; while [ $c -le $cpus ]; do list=$list,$c; c=$((c * 2)); done
  [ "${list##*,}" = "$cpus" ] || list=$list,$cpus
  echo "estkit shard on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), -test.cpu $list" | tee -a "$out/report.txt"
  export ESTKIT_BENCH_TEXT=$bench
  step shard ./shards.test -test.run '^$' -test.bench 'ShardBuild|ShardBound' \
    -test.benchtime "${SHARD_BENCHTIME:-1x}" -test.count "${SHARD_COUNT:-1}" -test.cpu "$list" > "$out/shard.txt" 2>&1 || tail -5 "$out/shard.txt"
  python3 report.py --shard "$out/shard.txt" | tee -a "$out/report.txt"
  rm -rf "$bench"
fi
cat "$out/times.txt"
echo "device check: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
