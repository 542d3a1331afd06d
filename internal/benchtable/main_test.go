package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// round wraps body in the benchround lines of round n of unit, taken while
// other work kept `others` cores busy: 50 s of wall time in which the unit
// itself used 95 CPU seconds and the machine 95 + 50·others. load1 is the
// load average printed at both ends (the unit's own work lifts it).
func round(n int, unit string, others, load1 float64, body string) string {
	busy0, own0, wall0 := 1000.0*float64(n), 10.0*float64(n), 100.0*float64(n)
	return fmt.Sprintf("benchround begin round=%d unit=%s load1=%.2f busy_s=%.2f own_s=%.3f wall_s=%.3f\n%s"+
		"benchround end round=%d unit=%s load1=%.2f busy_s=%.2f own_s=%.3f wall_s=%.3f\n",
		n, unit, load1, busy0, own0, wall0, body,
		n, unit, load1+1.5, busy0+95+50*others, own0+95, wall0+50)
}

func runString(t *testing.T, in string, maxLoad float64) string {
	t.Helper()
	var out strings.Builder
	failed, err := run(strings.NewReader(in), &out, maxLoad)
	if err != nil || failed {
		t.Fatalf("run: failed=%v err=%v", failed, err)
	}
	return out.String()
}

// Rounds 1 and 3 ran quiet, round 2 with 1.2 cores of other work: round
// 2's results (far off, as a busy machine's are) are in no figure.
func TestRoundsUnderLoadDiscarded(t *testing.T) {
	in := "goos: linux\n" +
		round(1, "ingest:BenchmarkXIngest", 0.1, 0.2, "BenchmarkXIngest-2  1  1000000000 ns/op  40.00 MB/s  2000 B/op\n"+
			"BenchmarkXBound-2  1  500000000 ns/op  100.00 MB/s\n") +
		round(2, "ingest:BenchmarkXIngest", 1.2, 2.2, "BenchmarkXIngest-2  1  9000000000 ns/op  5.00 MB/s  9000 B/op\n"+
			"BenchmarkXBound-2  1  900000000 ns/op  60.00 MB/s\n") +
		round(3, "ingest:BenchmarkXIngest", 0.4, 0.3, "BenchmarkXIngest-2  1  3000000000 ns/op  60.00 MB/s  4000 B/op\n"+
			"    bench_test.go:10: some log line 1 2 3\n"+
			"BenchmarkXBound-2  1  500000000 ns/op  100.00 MB/s\n") +
		"PASS\n"
	got := runString(t, in, 0.5)
	want := `Medians of the rounds kept (other work ≤ 0.5 cores), min–max in brackets.

| benchmark | kept | ns/op | MB/s | B/op |
|---|---:|---:|---:|---:|
| BenchmarkXIngest | 2 of 3 | 2000000000 (1000000000–3000000000) | 50 (40–60) | 3000 (2000–4000) |
| BenchmarkXBound | 2 of 3 | 500000000 | 100 |  |

| pair | rounds with both | Ingest MB/s | Bound MB/s | Ingest / Bound | per round |
|---|---:|---:|---:|---:|---|
| X | 2 | 50 | 100 | 50% | 40%–60% |

| round | unit | load1 before | load1 after | other work (cores) | s | results |
|---:|---|---:|---:|---:|---:|---|
| 1 | ingest:BenchmarkXIngest | 0.20 | 1.70 | 0.10 | 50.0 | kept |
| 2 | ingest:BenchmarkXIngest | 2.20 | 3.70 | 1.20 | 50.0 | discarded: under load (> 0.5) |
| 3 | ingest:BenchmarkXIngest | 0.30 | 1.80 | 0.40 | 50.0 | kept |
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Every round under load: the figures are printed, marked, under a heading
// that says so, and no row, pair or ratio reads as a clean figure.
func TestAllUnderLoad(t *testing.T) {
	in := round(1, "train:BenchmarkGPT2Step", 0.9, 1, "BenchmarkGPT2Step/t/est=full-2  1  100 ns/op  2000 ms/step  128 tok/s  100 GFLOP/s\n"+
		"BenchmarkSgemm-2  1  0 ns/op  150 GFLOP/s\n"+
		"BenchmarkGPT2StepAnchor/t/est=full-1  3  100 ns/op  2500 ms/step  102.4 tok/s\n") +
		round(2, "train:BenchmarkGPT2Step", 1.5, 1, "BenchmarkGPT2Step/t/est=full-2  1  100 ns/op  2200 ms/step  116.4 tok/s  90 GFLOP/s\n"+
			"BenchmarkSgemm-2  1  0 ns/op  140 GFLOP/s\n"+
			"BenchmarkGPT2StepAnchor/t/est=full-1  3  100 ns/op  2700 ms/step  94.8 tok/s\n")
	got := runString(t, in, 0.5)
	if !strings.HasPrefix(got, "**UNDER LOAD — not a figure**") {
		t.Errorf("output does not begin with the under-load heading:\n%s", got)
	}
	for _, line := range []string{
		"| BenchmarkGPT2Step/t/est=full | 0 of 2 UNDER LOAD — not a figure | 100 | 2100 (2000–2200) |",
		"| BenchmarkSgemm | 0 of 2 UNDER LOAD — not a figure |",
		"| GPT2/t/est=full | 2 | 122.2 | 98.60 | 1.24× UNDER LOAD — not a figure | 1.23×–1.25× |",
		"| GPT2Step/t/est=full | 2 | 95 | 145 | 66% UNDER LOAD — not a figure | 64%–67% |",
		"| 2 | train:BenchmarkGPT2Step | 1.00 | 2.50 | 1.50 | 50.0 | discarded: under load (> 0.5) |",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q in\n%s", line, got)
		}
	}
	// The same rounds with a threshold above both are kept: no mark anywhere.
	if got := runString(t, in, 2); strings.Contains(got, "UNDER LOAD") || !strings.Contains(got, "| BenchmarkSgemm | 2 of 2 |") {
		t.Errorf("with -max-load 2:\n%s", got)
	}
}

// The MFU of a step is its GFLOP/s over the sgemm rate of the same run,
// and the per-round range pairs each step with the sgemm of its own round.
func TestMFU(t *testing.T) {
	in := round(1, "train:BenchmarkGPT2Step", 0, 0.1, "BenchmarkGPT2Step/t/est=full-2  1  100 ns/op  1700 ms/step  117 GFLOP/s  200 GFLOP/step\n"+
		"BenchmarkSgemm-2  1  0 ns/op  156 GFLOP/s\n") +
		round(2, "train:BenchmarkGPT2Step", 0, 0.1, "BenchmarkGPT2Step/t/est=full-2  1  100 ns/op  1600 ms/step  125 GFLOP/s  200 GFLOP/step\n"+
			"BenchmarkSgemm-2  1  0 ns/op  160 GFLOP/s\n") +
		round(3, "train:BenchmarkGPT2Step", 3, 0.1, "BenchmarkGPT2Step/t/est=full-2  1  100 ns/op  5000 ms/step  40 GFLOP/s  200 GFLOP/step\n"+
			"BenchmarkSgemm-2  1  0 ns/op  60 GFLOP/s\n")
	got := runString(t, in, 0.5)
	// medians 121 / 158 = 76.6%; rounds 117/156 = 75.0%, 125/160 = 78.1%
	want := "| GPT2Step/t/est=full | 2 | 121 | 158 | 77% | 75%–78% |\n"
	if !strings.Contains(got, want) {
		t.Errorf("no line %q in\n%s", want, got)
	}
}

// A step pairs with the sgemm of its own B·T where the run has it (the
// rate grows with M), and with the unshaped BenchmarkSgemm otherwise.
func TestMFUByShape(t *testing.T) {
	in := round(1, "train:BenchmarkGPT2Step", 0, 0.1, "BenchmarkGPT2Step/m/B=4,T=64/est=full-2  1  100 ns/op  900 ms/step  180 GFLOP/s\n"+
		"BenchmarkGPT2Step/m/B=4,T=1024/est=full-2  1  100 ns/op  15000 ms/step  220 GFLOP/s\n"+
		"BenchmarkGPT2Step/m/B=2,T=64/est=full-2  1  100 ns/op  500 ms/step  150 GFLOP/s\n"+
		"BenchmarkSgemm/M=256-2  1  0 ns/op  200 GFLOP/s\n"+
		"BenchmarkSgemm/M=4096-2  1  0 ns/op  275 GFLOP/s\n")
	got := runString(t, in, 0.5)
	for _, line := range []string{
		"| GPT2Step/m/B=4,T=64/est=full | 1 | 180 | 200 | 90% | 90%–90% |",
		"| GPT2Step/m/B=4,T=1024/est=full | 1 | 220 | 275 | 80% | 80%–80% |",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q in\n%s", line, got)
		}
	}
	// M=128 was not run, and there is no unshaped sgemm: no MFU, rather
	// than one over another shape's rate.
	if strings.Contains(got, "| GPT2Step/m/B=2,T=64/est=full | 1 |") {
		t.Errorf("B=2 paired with another shape's sgemm:\n%s", got)
	}
}

func TestScaling(t *testing.T) {
	in := round(1, "p:BenchmarkP", 0, 0.1, "BenchmarkP/a/threads=1-2  1  100 ns/op  40.0 MB/s\nBenchmarkP/a/threads=2-2  1  100 ns/op  70.0 MB/s\n") +
		round(2, "p:BenchmarkP", 0, 0.1, "BenchmarkP/a/threads=1-2  1  100 ns/op  50.0 MB/s\nBenchmarkP/a/threads=2-2  1  100 ns/op  90.0 MB/s\n") +
		round(3, "p:BenchmarkP", 0, 0.1, "BenchmarkP/a/threads=2-2  1  100 ns/op  80.0 MB/s\nBenchmarkQ/threads=2-2  1  100 ns/op  80.0 MB/s\n")
	got := runString(t, in, 0.5)
	want := "| P/a/threads=2 | 45 | 80 | 1.78× | 1.75×–1.80× |\n"
	if !strings.Contains(got, want) || strings.Contains(got, "| Q/") {
		t.Errorf("got\n%s\nwant a line %q and none for Q", got, want)
	}
}

// Object storage against the local disk: each …=s3… sub-benchmark's MB/s
// over the one with every such value "local", per round; a benchmark with
// no local partner (Q), or one of the local disk itself, has no line.
func TestStorage(t *testing.T) {
	in := round(1, "s:BenchmarkL", 0, 0.1, "BenchmarkL/src=local-2  1  100 ns/op  400 MB/s  2 tok/s\n"+
		"BenchmarkL/src=s3-cold-2  1  100 ns/op  100 MB/s\nBenchmarkL/src=s3-warm-2  1  100 ns/op  300 MB/s\n"+
		"BenchmarkI/in=local,out=local-2  1  100 ns/op  50 MB/s\nBenchmarkI/in=s3,out=local-2  1  100 ns/op  40 MB/s\n"+
		"BenchmarkI/in=s3,out=s3-2  1  100 ns/op  10 MB/s\nBenchmarkQ/src=s3-cold-2  1  100 ns/op  10 MB/s\n") +
		round(2, "s:BenchmarkL", 0, 0.1, "BenchmarkL/src=local-2  1  100 ns/op  500 MB/s\n"+
			"BenchmarkL/src=s3-cold-2  1  100 ns/op  150 MB/s\nBenchmarkL/src=s3-warm-2  1  100 ns/op  500 MB/s\n")
	got := runString(t, in, 0.5)
	// medians: local 450, cold 125, warm 400; per round 25%, 30% and 75%, 100%
	for _, want := range []string{
		"| object storage | rounds with both | MB/s | local MB/s | of local | per round |\n",
		"| L/src=s3-cold | 2 | 125 | 450 | 28% | 25%–30% |\n",
		"| L/src=s3-warm | 2 | 400 | 450 | 89% | 75%–100% |\n",
		"| I/in=s3,out=local | 1 | 40 | 50 | 80% | 80%–80% |\n",
		"| I/in=s3,out=s3 | 1 | 10 | 50 | 20% | 20%–20% |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no line %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "| Q/") || strings.Contains(got, "| L/src=local |") {
		t.Errorf("a line for Q or for the local disk itself:\n%s", got)
	}
}

func TestESTSavings(t *testing.T) {
	var in strings.Builder
	for i, ms := range []int{1400, 1500, 1600} {
		in.WriteString(round(i+1, "s:BenchmarkS", 0, 0.1, fmt.Sprintf("BenchmarkS/x/est=full-2  1  100 ns/op  %d ms/step  300 GFLOP/step\n"+
			"BenchmarkS/x/est=0.5:0.5:1-2  1  100 ns/op  %d ms/step  200 GFLOP/step\n", 2000+100*(i-1), ms)))
	}
	in.WriteString(round(4, "s:BenchmarkS", 0, 0.1, "BenchmarkS/y/est=0.5:0.5:1-2  1  100 ns/op  1600 ms/step  200 GFLOP/step\n"))
	got := runString(t, in.String(), 0.5)
	// medians 1500 / 2000; per round 1400/1900, 1500/2000, 1600/2100
	want := "| S/x/est=0.5:0.5:1 | 1500 | 2000 | 0.750 | 0.737–0.762 | 0.667 | 1.125 |\n"
	if !strings.Contains(got, want) || strings.Contains(got, "| S/y/") {
		t.Errorf("got\n%s\nwant a line %q and none for S/y", got, want)
	}
}

// Output with no benchround lines (a bare go test -bench) has no load
// record: its figures are printed, marked as such.
func TestNoLoadRecord(t *testing.T) {
	in := "BenchmarkXIngest-2  3  1000 ns/op  40.00 MB/s\nBenchmarkXBound-2  3  500 ns/op  100.00 MB/s\n"
	got := runString(t, in, 0.5)
	for _, line := range []string{
		"| BenchmarkXIngest | 0 of 1 LOAD NOT RECORDED — not a figure | 1000 | 40 |",
		"| X | 0 | 40 | 100 | 40% LOAD NOT RECORDED — not a figure | – |",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q in\n%s", line, got)
		}
	}
}

func TestJudge(t *testing.T) {
	nan := math.NaN()
	m := func(load1, busy, own, wall float64) mark { return mark{load1, busy, own, wall} }
	for _, c := range []struct {
		name   string
		rec    record
		want   status
		others float64
	}{
		{"quiet", record{unit: "u", ended: true, begin: m(3, 100, 10, 0), end: m(3, 200, 105, 10)}, quiet, 0.5},
		{"at the threshold is kept", record{unit: "u", ended: true, begin: m(0, 100, 10, 0), end: m(0, 200, 100, 20)}, quiet, 0.5},
		{"over it", record{unit: "u", ended: true, begin: m(0, 100, 10, 0), end: m(0, 200, 90, 10)}, loaded, 2},
		{"accounting skew below zero reads as none", record{unit: "u", ended: true, begin: m(0, 100, 10, 0), end: m(0, 190, 101, 10)}, quiet, 0},
		{"no /proc/stat: load at the start, low", record{unit: "u", ended: true, begin: m(0.3, nan, 10, 0), end: m(1.9, nan, 100, 10)}, quiet, nan},
		{"no /proc/stat: load at the start, high", record{unit: "u", ended: true, begin: m(0.8, nan, 10, 0), end: m(0.1, nan, 100, 10)}, loaded, nan},
		{"nothing readable", record{unit: "u", ended: true, begin: m(nan, nan, nan, nan), end: m(nan, nan, nan, nan)}, unrecord, nan},
		{"no end line", record{unit: "u", begin: m(0, 100, 10, 0)}, unrecord, nan},
		{"outside any round", record{}, unrecord, nan},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.rec
			r.judge(0.5)
			if r.status != c.want || !(r.others == c.others || math.IsNaN(r.others) && math.IsNaN(c.others)) {
				t.Errorf("status %d, others %v; want %d, %v", r.status, r.others, c.want, c.others)
			}
		})
	}
}

// A round without its end line (make bench killed mid-round) keeps none of
// its results.
func TestNoEndLine(t *testing.T) {
	in := round(1, "u:BenchmarkA", 0, 0.1, "BenchmarkA-2  1  10 ns/op\n") +
		"benchround begin round=2 unit=u:BenchmarkA load1=0.1 busy_s=1 own_s=1 wall_s=1\nBenchmarkA-2  1  99 ns/op\n"
	got := runString(t, in, 0.5)
	for _, line := range []string{"| BenchmarkA | 1 of 2 | 10 |", "| 2 | u:BenchmarkA | 0.10 | ? | ? | ? | discarded: no end line |"} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q in\n%s", line, got)
		}
	}
}

func TestMalformedMark(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"not key=value", "benchround begin round=1 unit=u load1\n", "line 1"},
		{"bad number", "x\nbenchround begin round=1 unit=u load1=abc\n", "line 2"},
		{"infinite", "benchround begin round=1 unit=u wall_s=Inf\n", "line 1"},
		{"no unit", "benchround begin round=1\n", "line 1"},
		{"round 0", "benchround begin round=0 unit=u\n", "line 1"},
		{"neither begin nor end", "benchround middle round=1 unit=u\n", "line 1"},
		{"end without begin", "benchround end round=1 unit=u\n", "line 1"},
		{"end of another unit", "benchround begin round=1 unit=u\nbenchround end round=1 unit=v\n", "line 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(strings.NewReader(c.in), &strings.Builder{}, 0.5)
			if !errors.Is(err, ErrMark) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v; want ErrMark at %s", err, c.want)
			}
		})
	}
}

func TestFailure(t *testing.T) {
	var out strings.Builder
	failed, err := run(strings.NewReader("--- FAIL: BenchmarkX\nFAIL\n"), &out, 0.5)
	if err != nil || !failed {
		t.Fatalf("failed=%v err=%v; want a failure", failed, err)
	}
	if !strings.Contains(out.String(), "no benchmark results") {
		t.Errorf("output %q", out.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}
