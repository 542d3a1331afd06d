package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/estkit/estkit/ingest
BenchmarkXIngest-2   	       3	1000000000 ns/op	  40.00 MB/s	  8.5 input-MB/s	2000 B/op	  20 allocs/op
BenchmarkXIngest-2   	       3	3000000000 ns/op	  60.00 MB/s	  9.0 input-MB/s	4000 B/op	  40 allocs/op
BenchmarkXIngest-2   	       3	2000000000 ns/op	  50.00 MB/s	  7.0 input-MB/s	3000 B/op	  30 allocs/op
BenchmarkXBound-2    	       3	 500000000 ns/op	 100.00 MB/s	  1.5 xz-out-MB/s
BenchmarkXBound-2    	       3	 500000000 ns/op	 100.00 MB/s	  2.5 xz-out-MB/s
BenchmarkLonely/text=50MB-2   1   12 ns/op   246.0 peak-RSS-MiB
    bench_test.go:10: some log line 1 2 3
PASS
ok  	github.com/estkit/estkit/ingest	36.570s
`

func TestRun(t *testing.T) {
	var out strings.Builder
	failed, err := run(strings.NewReader(sample), &out)
	if err != nil || failed {
		t.Fatalf("run: failed=%v err=%v", failed, err)
	}
	want := `| benchmark | runs | ns/op | MB/s | input-MB/s | xz-out-MB/s | peak-RSS-MiB | B/op | allocs/op |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| BenchmarkXIngest | 3 | 2000000000 | 50 | 8.500 |  |  | 3000 | 30 |
| BenchmarkXBound | 2 | 500000000 | 100 |  | 2 |  |  |  |
| BenchmarkLonely/text=50MB | 1 | 12 |  |  |  | 246 |  |  |

| pair | Ingest MB/s | Bound MB/s | Ingest / Bound |
|---|---:|---:|---:|
| X | 50 | 100 | 50% |
`
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestScaling(t *testing.T) {
	in := `BenchmarkP/a/threads=1-2  1  100 ns/op  40.0 MB/s
BenchmarkP/a/threads=2-2  1  100 ns/op  70.0 MB/s
BenchmarkP/a/threads=1-2  1  100 ns/op  50.0 MB/s
BenchmarkP/a/threads=2-2  1  100 ns/op  90.0 MB/s
BenchmarkP/a/threads=2-2  1  100 ns/op  80.0 MB/s
BenchmarkQ/threads=2-2  1  100 ns/op  80.0 MB/s
`
	var out strings.Builder
	if _, err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := "| P/a/threads=2 | 45 | 80 | 1.78× |\n"
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "| Q/") {
		t.Errorf("got\n%s\nwant a line %q and none for Q", out.String(), want)
	}
}

func TestFailure(t *testing.T) {
	var out strings.Builder
	failed, err := run(strings.NewReader("--- FAIL: BenchmarkX\nFAIL\n"), &out)
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

func TestESTSavings(t *testing.T) {
	in := `BenchmarkS/x/est=full-2  1  100 ns/op  2000 ms/step  300 GFLOP/step
BenchmarkS/x/est=0.5:0.5:1-2  1  100 ns/op  1400 ms/step  200 GFLOP/step
BenchmarkS/x/est=0.5:0.5:1-2  1  100 ns/op  1500 ms/step  200 GFLOP/step
BenchmarkS/x/est=0.5:0.5:1-2  1  100 ns/op  1600 ms/step  200 GFLOP/step
BenchmarkS/y/est=0.5:0.5:1-2  1  100 ns/op  1600 ms/step  200 GFLOP/step
`
	var out strings.Builder
	if _, err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := "| S/x/est=0.5:0.5:1 | 1500 | 2000 | 0.750 | 0.667 | 1.125 |\n"
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "| S/y/") {
		t.Errorf("got\n%s\nwant a line %q and none for S/y", out.String(), want)
	}
}
