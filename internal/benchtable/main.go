// Command benchtable summarises `go test -bench` output read on stdin as one
// Markdown table: for each benchmark (its name without the -GOMAXPROCS
// suffix), the number of runs and the median of every metric it reported.
// For each pair of benchmarks named XIngest and XBound, or XEncode and
// XAnchor, it then prints the ratio of their median MB/s (by the convention
// of this repository, b.SetBytes is given text bytes, so MB/s is MB of text
// per second). It exits
// with status 1 when the input reports a failure, so that `make bench` fails
// even when the output was piped through tee.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	failed, err := run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	if failed {
		fmt.Fprintln(os.Stderr, "benchtable: the benchmark run reported a failure")
		os.Exit(1)
	}
}

// bench is every run of one benchmark.
type bench struct {
	name    string
	runs    int
	metrics map[string][]float64 // unit -> one value per run
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads `go test -bench` output: benchmarks in order of first
// appearance, the order of units, and whether a failure was reported.
func parse(r io.Reader) (benches []*bench, units []string, failed bool, err error) {
	byName := map[string]*bench{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "panic:") {
			failed = true
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (for example a benchmark's log output)
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		b := byName[name]
		if b == nil {
			b = &bench{name: name, metrics: map[string][]float64{}}
			byName[name] = b
			benches = append(benches, b)
		}
		b.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, failed, fmt.Errorf("%q: %v", line, err)
			}
			u := f[i+1]
			b.metrics[u] = append(b.metrics[u], v)
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
	}
	return benches, orderUnits(units), failed, sc.Err()
}

// orderUnits puts time and throughput first, custom metrics next, and
// allocation counts last.
func orderUnits(units []string) []string {
	rank := func(u string) int {
		switch u {
		case "ns/op":
			return 0
		case "MB/s":
			return 1
		case "B/op":
			return 3
		case "allocs/op":
			return 4
		}
		return 2
	}
	slices.SortStableFunc(units, func(a, b string) int { return rank(a) - rank(b) })
	return units
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// format prints v with about four significant digits and no exponent, and
// whole numbers without decimals.
func format(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	a := v
	if a < 0 {
		a = -a
	}
	prec := 0
	switch {
	case a >= 1000:
	case a >= 100:
		prec = 1
	case a >= 10:
		prec = 2
	default:
		prec = 3
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// pairings are the benchmark name suffixes compared by the median of their
// MB/s: XIngest and XBuild against XBound (a share of the bound), XEncode against
// XAnchor (a speed-up over the reference implementation).
var pairings = []struct {
	subject, anchor string
	times           bool
	unit            string
}{
	{"Ingest", "Bound", false, "MB/s"},
	{"Build", "Bound", false, "MB/s"},
	{"Encode", "Anchor", true, "MB/s"},
	{"Step", "StepAnchor", true, "tok/s"},
}

func run(r io.Reader, w io.Writer) (failed bool, err error) {
	benches, units, failed, err := parse(r)
	if err != nil {
		return failed, err
	}
	if len(benches) == 0 {
		fmt.Fprintln(w, "no benchmark results")
		return failed, nil
	}
	fmt.Fprintf(w, "| benchmark | runs | %s |\n", strings.Join(units, " | "))
	fmt.Fprintf(w, "|---|---:|%s\n", strings.Repeat("---:|", len(units)))
	byName := map[string]*bench{}
	for _, b := range benches {
		byName[b.name] = b
		cells := []string{b.name, strconv.Itoa(b.runs)}
		for _, u := range units {
			if v, ok := b.metrics[u]; ok {
				cells = append(cells, format(median(v)))
			} else {
				cells = append(cells, "")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	for _, pr := range pairings {
		header := false
		for _, b := range benches {
			first, rest, _ := strings.Cut(b.name, "/")
			if !strings.HasSuffix(first, pr.subject) {
				continue
			}
			partner := strings.TrimSuffix(first, pr.subject) + pr.anchor
			if rest != "" {
				partner += "/" + rest
			}
			p := byName[partner]
			if p == nil || b.metrics[pr.unit] == nil || p.metrics[pr.unit] == nil {
				continue
			}
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintf(w, "| pair | %s %s | %s %s | %s / %s |\n", pr.subject, pr.unit, pr.anchor, pr.unit, pr.subject, pr.anchor)
				fmt.Fprintln(w, "|---|---:|---:|---:|")
				header = true
			}
			in, bd := median(b.metrics[pr.unit]), median(p.metrics[pr.unit])
			name := strings.TrimPrefix(strings.TrimSuffix(first, pr.subject), "Benchmark")
			if rest != "" {
				name += "/" + rest
			}
			ratio := fmt.Sprintf("%.0f%%", 100*in/bd)
			if pr.times {
				ratio = fmt.Sprintf("%.1f×", in/bd)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, format(in), format(bd), ratio)
		}
	}
	scaling(w, benches, byName)
	estSavings(w, benches, byName)
	return failed, nil
}

// estSavings prints, for each benchmark named …/est=RATES that reports
// ms/step and GFLOP/step, its median time and FLOPs over those of the same
// benchmark at est=full, and how far the time ratio is above the FLOPs
// ratio (EST's realized saving against its FLOPs saving).
func estSavings(w io.Writer, benches []*bench, byName map[string]*bench) {
	header := false
	for _, b := range benches {
		i := strings.LastIndex(b.name, "est=")
		if i < 0 || b.name[i:] == "est=full" {
			continue
		}
		full := byName[b.name[:i]+"est=full"]
		if full == nil || b.metrics["ms/step"] == nil || full.metrics["ms/step"] == nil || b.metrics["GFLOP/step"] == nil || full.metrics["GFLOP/step"] == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| EST step | ms/step | full ms/step | time ratio | FLOPs ratio (all) | time ratio / FLOPs ratio |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
			header = true
		}
		t, tf := median(b.metrics["ms/step"]), median(full.metrics["ms/step"])
		f, ff := median(b.metrics["GFLOP/step"]), median(full.metrics["GFLOP/step"])
		fmt.Fprintf(w, "| %s | %s | %s | %.3f | %.3f | %.3f |\n", strings.TrimPrefix(b.name, "Benchmark"), format(t), format(tf), t/tf, f/ff, (t/tf)/(f/ff))
	}
}

// scaling prints, for each benchmark whose name holds "threads=N" (N > 1),
// its median MB/s against the same benchmark's "threads=1".
func scaling(w io.Writer, benches []*bench, byName map[string]*bench) {
	header := false
	for _, b := range benches {
		i := strings.Index(b.name, "threads=")
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimRightFunc(b.name[i+len("threads="):], func(r rune) bool { return r < '0' || r > '9' }))
		if err != nil || n <= 1 {
			continue
		}
		one := byName[b.name[:i]+"threads=1"+b.name[i+len("threads=")+len(strconv.Itoa(n)):]]
		if one == nil || b.metrics["MB/s"] == nil || one.metrics["MB/s"] == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| scaling | threads=1 MB/s | threads=N MB/s | ratio |")
			fmt.Fprintln(w, "|---|---:|---:|---:|")
			header = true
		}
		a, c := median(one.metrics["MB/s"]), median(b.metrics["MB/s"])
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× |\n", strings.TrimPrefix(b.name, "Benchmark"), format(a), format(c), c/a)
	}
}
