#!/bin/sh
# The rounds of `make bench` (docs/PERF.md, "How to run"). Every top-level Go
# benchmark that BENCH selects is a unit; a round runs each unit once and,
# right after it, that unit's anchors (the reference implementations it is
# compared with), so that a benchmark and its anchor sit close in time and
# under the same conditions. Each unit of each round is wrapped in two lines
#
#   benchround begin|end round=N unit=PKG:NAME load1=L busy_s=B own_s=O wall_s=W
#
# L: the 1-minute load average; B: the CPU seconds every core of the machine
# spent busy since boot (/proc/stat, steal included); O: the CPU seconds of
# this script's children so far (the benchmarks and anchors themselves, by
# `times`); W: the wall clock. internal/benchtable takes from the difference
# of the two lines the CPU that something other than the unit used while it
# ran ((ΔB - ΔO) / ΔW, in cores) and discards a unit's round when that is
# over BENCH_MAX_LOAD. The load average alone cannot say this: a unit that
# keeps two cores busy for a minute lifts it past 1 by itself.
#
# Environment: GO, TAGS, BENCH (a -bench regexp; its first level, up to the
# first '/', chooses the top-level benchmarks, the rest is passed on),
# BENCHTIME, BENCHCOUNT, REFS (the reference files and benchmark texts),
# BENCH_WORK (a scratch directory for the test binaries), ESTKIT_BENCH_T1024.
set -u
go=${GO:-go}
tags=${TAGS-openblas}
filter=${BENCH:-.}
count=${BENCHCOUNT:-10}
benchtime=${BENCHTIME:-1x}
refs=${REFS:?REFS: the reference directory}
work=${BENCH_WORK:?BENCH_WORK: a scratch directory}
first=${filter%%/*}
case $filter in
*/*) rest=/${filter#*/} ;;
*) rest= ;;
esac
root=$(pwd)
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
mkdir -p "$work" || exit 2

torch=no
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
	torch=yes
else
	echo "python3-torch missing (make fixtures installs it): no PyTorch anchor"
fi

# mark prints one benchround line ($1 begin|end, $2 round, $3 unit). times
# must run in this shell, not in a pipeline or $(...): a forked shell's
# children times start at zero.
mark() {
	times >"$work/times"
	own=$(awk 'function sec(s, m) { m = s; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", s); sub(/s$/, "", s); return m * 60 + s }
		NR == 2 { printf "%.3f", sec($1) + sec($2) }' "$work/times")
	busy=$(awk -v hz="$hz" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat 2>/dev/null)
	load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
	echo "benchround $1 round=$2 unit=$3 load1=${load:-?} busy_s=${busy:-?} own_s=${own:-?} wall_s=$(date +%s.%N)"
}

# The test binaries, built once before the rounds (no round pays for a
# build), of the packages that declare a benchmark the first level of
# BENCH may select (grep -E against the declared names; the test binary's
# own -test.list then decides, with Go's regexp).
units=
for dir in $("$go" list -tags "$tags" -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./...); do
	names=$(sed -n 's/^func \(Benchmark[A-Za-z0-9_]*\)(.*/\1/p' "$dir"/*_test.go | grep -E -- "$first") || continue
	[ -n "$names" ] || continue
	rel=${dir#"$root"/}
	bin=$work/$(echo "$rel" | tr / _).test
	"$go" test -tags "$tags" -c -o "$bin" "./$rel" || {
		echo "FAIL: building the benchmarks of $rel"
		exit 1
	}
	for name in $(cd "$dir" && "$bin" -test.list "$first" | grep '^Benchmark'); do
		units="$units $rel:$name"
	done
done
if [ -z "$units" ]; then
	echo "FAIL: BENCH=$filter selects no benchmark"
	exit 1
fi
echo "benchunits$units"

# gobench runs one top-level benchmark ($2) of the package in $1, teeing
# its output into $work/out for the anchors to look at.
gobench() {
	(cd "$root/$1" && ESTKIT_REFS=$refs ESTKIT_BENCH_TEXT=$refs/bench "$work/$(echo "$1" | tr / _).test" \
		-test.run '^$' -test.bench "^$2\$$3" -test.benchtime "$benchtime" -test.count 1 -test.timeout 30m 2>&1) | tee "$work/out"
}

# anchors runs what unit $1 (PKG:NAME) is compared with, when the unit
# printed a result; the GPT-2, Llama and small-model steps also time the backend's
# sgemm (BenchmarkSgemm) in the same round, the denominator of their MFU.
anchors() {
	grep -q '^Benchmark' "$work/out" || return 0
	case $1 in
	tokenize:BenchmarkGPT2Encode)
		node tokenize/testdata/ref/bench.mjs "$refs/bench" || echo "FAIL: $1 anchor (tiktoken)"
		;;
	tokenize:BenchmarkLlama2Encode)
		/usr/bin/python3 tokenize/testdata/ref/bench_spm.py "$refs/bench" "$refs/llama2.model" || echo "FAIL: $1 anchor (sentencepiece)"
		;;
	train:BenchmarkGPT2Step)
		t1024=0
		grep -q 'T=1024' "$work/out" && t1024=1
		gobench train BenchmarkSgemm ""
		[ "$torch" = yes ] && { OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 train/testdata/bench_torch.py T1024=$t1024 || echo "FAIL: $1 anchor (pytorch)"; }
		;;
	train:BenchmarkSmallStep)
		gobench train BenchmarkSgemm ""
		;;
	train:BenchmarkLlamaStep)
		gobench train BenchmarkSgemm ""
		[ "$torch" = yes ] && { OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 train/testdata/bench_torch_llama.py || echo "FAIL: $1 anchor (pytorch llama)"; }
		;;
	esac
	return 0
}

i=1
while [ "$i" -le "$count" ]; do
	for u in $units; do
		pkg=${u%%:*}
		name=${u#*:}
		mark begin "$i" "$u"
		gobench "$pkg" "$name" "$rest"
		anchors "$u"
		mark end "$i" "$u"
	done
	i=$((i + 1))
done
