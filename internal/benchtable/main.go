// Command benchtable summarises the output of `make bench` (read on stdin)
// as Markdown tables, keeping only the rounds that ran on a quiet machine.
//
// Its input is `go test -bench` output, and anchors' lines in the same
// format, cut into rounds by the lines internal/benchtable/rounds.sh prints
// around each unit (one top-level benchmark and its anchors) of each round:
//
//	benchround begin|end round=N unit=PKG:NAME load1=L busy_s=B own_s=O wall_s=W
//
// From the begin and end lines of a unit's round it takes the cores that
// other work kept busy while the unit ran: the machine's busy CPU seconds
// less the unit's own, over the wall time, ((ΔB − ΔO) / ΔW). A round in
// which that exceeds -max-load is under load and its results are left out
// of every median; where /proc/stat was not readable (B is "?"), the
// 1-minute load average at the start (L) decides instead. Results outside
// any round, or in a round with no end line, carry no load record and are
// left out too.
//
// For each benchmark (its name without the -GOMAXPROCS suffix) it prints
// how many results were kept of all, and for every metric the median of
// the kept ones with their min–max range. Then: the ratio to its anchor of
// each pair (XIngest and XBuild against XBound, XEncode against XAnchor,
// XStep against XStepAnchor), from the medians and per round; each step
// benchmark's GFLOP/s over the same round's sgemm at the step's own B·T
// (BenchmarkSgemm/M=…, or BenchmarkSgemm where it has no shapes: MFU); EST's
// step-time ratio next to its FLOPs ratio; thread scaling; object storage
// against the local disk (…/src=s3-cold against …/src=local); and the log
// of the rounds. A row or pair with no kept result shows the figures of all its
// rounds marked "UNDER LOAD — not a figure" (or "LOAD NOT RECORDED"), and
// when no result at all was kept the tables are headed by that mark.
//
// It exits with status 1 when the input reports a failure, so that `make
// bench` fails even when the output was piped through tee, and with status 2
// on input it cannot read (a malformed benchround line names its line).
package main

import (
	"bufio"
	"errors"
	"flag"
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
	maxLoad := flag.Float64("max-load", 0.5, "discard a round in which other work kept more than this many cores busy (BENCH_MAX_LOAD)")
	flag.Parse()
	if math.IsNaN(*maxLoad) || *maxLoad < 0 {
		fmt.Fprintf(os.Stderr, "benchtable: -max-load %v: want a number of cores ≥ 0\n", *maxLoad)
		os.Exit(2)
	}
	failed, err := run(os.Stdin, os.Stdout, *maxLoad)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	if failed {
		fmt.Fprintln(os.Stderr, "benchtable: the benchmark run reported a failure")
		os.Exit(1)
	}
}

// status is what a round's load record says about its results.
type status int

const (
	quiet    status = iota // other work used at most -max-load cores: kept
	loaded                 // other work used more: discarded
	unrecord               // no load record (outside a round, or no end line): discarded
)

// mark is one benchround line's readings; NaN where it printed "?".
type mark struct {
	load1, busy, own, wall float64
}

// record is one unit's round: the results between a begin line and its end
// line. Record 0 holds the results outside every round.
type record struct {
	round      int
	unit       string
	begin, end mark
	ended      bool
	status     status
	others     float64 // cores used by other work while the unit ran; NaN if unknown
}

// judge sets r.status and r.others against maxLoad.
func (r *record) judge(maxLoad float64) {
	r.others = math.NaN()
	if r.unit == "" || !r.ended {
		r.status = unrecord
		return
	}
	dw := r.end.wall - r.begin.wall
	if o := (r.end.busy - r.begin.busy - (r.end.own - r.begin.own)) / dw; dw > 0 && !math.IsNaN(o) {
		r.others = max(o, 0) // the two clocks differ by a few ticks
	}
	switch {
	case !math.IsNaN(r.others):
		r.status = quiet
		if r.others > maxLoad {
			r.status = loaded
		}
	case !math.IsNaN(r.begin.load1):
		r.status = quiet
		if r.begin.load1 > maxLoad {
			r.status = loaded
		}
	default:
		r.status = unrecord
	}
}

// sample is one result line of a benchmark.
type sample struct {
	rec     int
	metrics map[string]float64 // unit -> value
}

// bench is every result of one benchmark.
type bench struct {
	name    string
	samples []sample
}

// table is the parsed input.
type table struct {
	benches []*bench
	byName  map[string]*bench
	units   []string
	records []*record
	failed  bool
}

var (
	procSuffix = regexp.MustCompile(`-\d+$`)
	// ErrMark is a benchround line benchtable cannot read.
	ErrMark = errors.New("malformed benchround line")
)

// parseMark reads the fields of a benchround line after begin|end.
func parseMark(fields []string) (round int, unit string, m mark, err error) {
	m = mark{math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return 0, "", m, fmt.Errorf("%q is not key=value", f)
		}
		seen[k] = true
		switch k {
		case "round":
			if round, err = strconv.Atoi(v); err != nil || round < 1 {
				return 0, "", m, fmt.Errorf("round=%q: want a round number ≥ 1", v)
			}
		case "unit":
			unit = v
		case "load1", "busy_s", "own_s", "wall_s":
			x := math.NaN()
			if v != "?" {
				if x, err = strconv.ParseFloat(v, 64); err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
					return 0, "", m, fmt.Errorf("%s=%q: want a number or ?", k, v)
				}
			}
			switch k {
			case "load1":
				m.load1 = x
			case "busy_s":
				m.busy = x
			case "own_s":
				m.own = x
			default:
				m.wall = x
			}
		}
	}
	if !seen["round"] || unit == "" {
		return 0, "", m, errors.New("want round= and unit=")
	}
	return round, unit, m, nil
}

// parse reads the output of make bench: benchmarks in order of first
// appearance, units in display order, rounds, and whether a failure was
// reported.
func parse(r io.Reader) (*table, error) {
	t := &table{byName: map[string]*bench{}, records: []*record{{}}}
	open := 0 // the record results go to
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "panic:") {
			t.failed = true
		}
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "benchround" {
			round, unit, m, err := parseMark(f[2:])
			if err == nil && f[1] != "begin" && f[1] != "end" {
				err = fmt.Errorf("%q: want begin or end", f[1])
			}
			if err == nil && f[1] == "end" && (open == 0 || t.records[open].round != round || t.records[open].unit != unit) {
				err = fmt.Errorf("end of round %d of %s, which has not begun", round, unit)
			}
			if err != nil {
				return nil, fmt.Errorf("stdin line %d: %w: %v", n, ErrMark, err)
			}
			if f[1] == "begin" {
				t.records = append(t.records, &record{round: round, unit: unit, begin: m})
				open = len(t.records) - 1
			} else {
				t.records[open].end, t.records[open].ended = m, true
				open = 0
			}
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (for example a benchmark's log output)
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		b := t.byName[name]
		if b == nil {
			b = &bench{name: name}
			t.byName[name] = b
			t.benches = append(t.benches, b)
		}
		s := sample{rec: open, metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("stdin line %d: %q: %v", n, line, err)
			}
			u := f[i+1]
			s.metrics[u] = v
			if !slices.Contains(t.units, u) {
				t.units = append(t.units, u)
			}
		}
		b.samples = append(b.samples, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	t.units = orderUnits(t.units)
	return t, nil
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

// spread prints the median of v and, when they differ, its min–max range.
func spread(v []float64, f func(float64) string) string {
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return f(median(v))
	}
	return fmt.Sprintf("%s (%s–%s)", f(median(v)), f(lo), f(hi))
}

const (
	underLoad   = "UNDER LOAD — not a figure"
	notRecorded = "LOAD NOT RECORDED — not a figure"
)

// selection is the results of one benchmark a figure is made of: those of
// quiet rounds where there are any, otherwise every one, with the mark
// that says why they are not a figure.
type selection struct {
	kept, all int
	mark      string // "" when kept > 0
	use       func(rec int) bool
}

func (t *table) selectOf(b *bench) selection {
	s := selection{all: len(b.samples)}
	loadedSeen := false
	for _, x := range b.samples {
		switch t.records[x.rec].status {
		case quiet:
			s.kept++
		case loaded:
			loadedSeen = true
		}
	}
	switch {
	case s.kept > 0:
		s.use = func(rec int) bool { return t.records[rec].status == quiet }
	case loadedSeen:
		s.mark, s.use = underLoad, func(int) bool { return true }
	default:
		s.mark, s.use = notRecorded, func(int) bool { return true }
	}
	return s
}

// values are b's values of unit from the records use admits.
func values(b *bench, unit string, use func(int) bool) []float64 {
	var v []float64
	for _, s := range b.samples {
		if x, ok := s.metrics[unit]; ok && use(s.rec) {
			v = append(v, x)
		}
	}
	return v
}

// perRecord is the median of b's values of unit in each record use admits.
func perRecord(b *bench, unit string, use func(int) bool) map[int]float64 {
	by := map[int][]float64{}
	for _, s := range b.samples {
		if x, ok := s.metrics[unit]; ok && use(s.rec) {
			by[s.rec] = append(by[s.rec], x)
		}
	}
	m := map[int]float64{}
	for r, v := range by {
		m[r] = median(v)
	}
	return m
}

// comparison is a over b in unit: the ratio of their medians, and the range
// of the ratios within rounds that hold both.
type comparison struct {
	a, b       float64 // medians
	ratio      float64 // a / b
	lo, hi     float64 // per-round range of a/b; NaN when no round holds both
	rounds     int     // rounds holding both
	mark       string
	aSel, bSel selection
}

func (t *table) compare(a, b *bench, unit string) (comparison, bool) {
	c := comparison{aSel: t.selectOf(a), bSel: t.selectOf(b)}
	use := func(rec int) bool { return c.aSel.use(rec) && c.bSel.use(rec) }
	c.mark = c.aSel.mark
	if c.mark == "" {
		c.mark = c.bSel.mark
	}
	if c.mark != "" {
		use = func(int) bool { return true } // a mark: every round, as the rows show
	}
	va, vb := values(a, unit, use), values(b, unit, use)
	if len(va) == 0 || len(vb) == 0 {
		return c, false
	}
	c.a, c.b = median(va), median(vb)
	c.ratio = c.a / c.b
	c.lo, c.hi = math.NaN(), math.NaN()
	pb := perRecord(b, unit, use)
	for r, x := range perRecord(a, unit, use) {
		y, ok := pb[r]
		if !ok || r == 0 {
			continue
		}
		q := x / y
		if c.rounds == 0 || q < c.lo {
			c.lo = q
		}
		if c.rounds == 0 || q > c.hi {
			c.hi = q
		}
		c.rounds++
	}
	return c, true
}

// rangeOf prints c's per-round range with f, or "–" with no round holding both.
func (c comparison) rangeOf(f func(float64) string) string {
	if c.rounds == 0 {
		return "–"
	}
	return f(c.lo) + "–" + f(c.hi)
}

func (c comparison) with(s string) string {
	if c.mark != "" {
		return s + " " + c.mark
	}
	return s
}

func run(r io.Reader, w io.Writer, maxLoad float64) (failed bool, err error) {
	t, err := parse(r)
	if err != nil {
		return false, err
	}
	for _, rec := range t.records {
		rec.judge(maxLoad)
	}
	if len(t.benches) == 0 {
		fmt.Fprintln(w, "no benchmark results")
		return t.failed, nil
	}
	anyKept := false
	for _, b := range t.benches {
		if t.selectOf(b).kept > 0 {
			anyKept = true
		}
	}
	if !anyKept {
		fmt.Fprintf(w, "**%s**: no round ran with other work at or under %g cores, or none carried a load record; every figure below is of rounds that did not.\n\n", underLoad, maxLoad)
	}
	fmt.Fprintf(w, "Medians of the rounds kept (other work ≤ %g cores), min–max in brackets.\n\n", maxLoad)
	fmt.Fprintf(w, "| benchmark | kept | %s |\n", strings.Join(t.units, " | "))
	fmt.Fprintf(w, "|---|---:|%s\n", strings.Repeat("---:|", len(t.units)))
	for _, b := range t.benches {
		s := t.selectOf(b)
		kept := fmt.Sprintf("%d of %d", s.kept, s.all)
		if s.mark != "" {
			kept += " " + s.mark
		}
		cells := []string{b.name, kept}
		for _, u := range t.units {
			if v := values(b, u, s.use); len(v) > 0 {
				cells = append(cells, spread(v, format))
			} else {
				cells = append(cells, "")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	pairs(w, t)
	mfu(w, t)
	scaling(w, t)
	storage(w, t)
	estSavings(w, t)
	roundLog(w, t, maxLoad)
	return t.failed, nil
}

// pairings are the benchmark name suffixes compared by the median of a
// unit: XIngest and XBuild against XBound (a share of the bound), XEncode
// against XAnchor and XStep against XStepAnchor (a speed-up over the
// reference implementation).
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

func pairs(w io.Writer, t *table) {
	for _, pr := range pairings {
		header := false
		for _, b := range t.benches {
			first, rest, _ := strings.Cut(b.name, "/")
			if !strings.HasSuffix(first, pr.subject) {
				continue
			}
			partner := strings.TrimSuffix(first, pr.subject) + pr.anchor
			if rest != "" {
				partner += "/" + rest
			}
			p := t.byName[partner]
			if p == nil {
				continue
			}
			c, ok := t.compare(b, p, pr.unit)
			if !ok {
				continue
			}
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintf(w, "| pair | rounds with both | %s %s | %s %s | %s / %s | per round |\n", pr.subject, pr.unit, pr.anchor, pr.unit, pr.subject, pr.anchor)
				fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
				header = true
			}
			name := strings.TrimPrefix(strings.TrimSuffix(first, pr.subject), "Benchmark")
			if rest != "" {
				name += "/" + rest
			}
			ratio := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }
			if pr.times {
				ratio = func(x float64) string { return fmt.Sprintf("%.2f×", x) }
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", name, c.rounds, format(c.a), format(c.b), c.with(ratio(c.ratio)), c.rangeOf(ratio))
		}
	}
}

// mfu prints, for each benchmark other than BenchmarkSgemm that reports
// GFLOP/s and ms/step, its GFLOP/s over the sgemm's GFLOP/s of the same
// run: the ratio of the medians, and the range of the ratios within the
// rounds that hold both (make bench times sgemm right after each step
// benchmark, in the same unit's round). A step named …/B=b,T=t/… pairs
// with BenchmarkSgemm/M=b·t, the product of its own shape, where the run
// has it; otherwise (and in runs before the sgemm had shapes) with
// BenchmarkSgemm.
func mfu(w io.Writer, t *table) {
	sgemm := func(b *bench) *bench {
		if m := stepShape.FindStringSubmatch(b.name); m != nil {
			B, _ := strconv.Atoi(m[1])
			T, _ := strconv.Atoi(m[2])
			if sg := t.byName[fmt.Sprintf("BenchmarkSgemm/M=%d", B*T)]; sg != nil {
				return sg
			}
		}
		return t.byName["BenchmarkSgemm"]
	}
	shares(w, t, "| step | rounds with both | GFLOP/s | sgemm GFLOP/s | MFU | per round |", "GFLOP/s", func(b *bench) *bench {
		if strings.HasPrefix(b.name, "BenchmarkSgemm") || values(b, "GFLOP/s", func(int) bool { return true }) == nil || values(b, "ms/step", func(int) bool { return true }) == nil {
			return nil
		}
		return sgemm(b)
	})
}

// stepShape finds a step benchmark's B and T in its name.
var stepShape = regexp.MustCompile(`/B=(\d+),T=(\d+)/`)

// shares prints a table, headed by head, with a row for each benchmark
// that ref pairs with another: the ratio of their medians of metric as a
// percentage, and the range of the ratios within the rounds that hold
// both. Nothing is printed where no benchmark has a pair.
func shares(w io.Writer, t *table, head, metric string, ref func(b *bench) *bench) {
	header := false
	for _, b := range t.benches {
		r := ref(b)
		if r == nil {
			continue
		}
		c, ok := t.compare(b, r, metric)
		if !ok {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, head)
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
			header = true
		}
		pct := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", strings.TrimPrefix(b.name, "Benchmark"), c.rounds, format(c.a), format(c.b), c.with(pct(c.ratio)), c.rangeOf(pct))
	}
}

// estSavings prints, for each benchmark named …/est=RATES that reports
// ms/step and GFLOP/step, its median time and FLOPs over those of the same
// benchmark at est=full, and how far the time ratio is above the FLOPs
// ratio (EST's realized saving against its FLOPs saving).
func estSavings(w io.Writer, t *table) {
	header := false
	for _, b := range t.benches {
		i := strings.LastIndex(b.name, "est=")
		if i < 0 || b.name[i:] == "est=full" {
			continue
		}
		full := t.byName[b.name[:i]+"est=full"]
		if full == nil {
			continue
		}
		ct, ok1 := t.compare(b, full, "ms/step")
		cf, ok2 := t.compare(b, full, "GFLOP/step")
		if !ok1 || !ok2 {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| EST step | ms/step | full ms/step | time ratio | per round | FLOPs ratio (all) | time ratio / FLOPs ratio |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|---:|")
			header = true
		}
		r3 := func(x float64) string { return fmt.Sprintf("%.3f", x) }
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.3f | %s |\n", strings.TrimPrefix(b.name, "Benchmark"), format(ct.a), format(ct.b),
			r3(ct.ratio), ct.rangeOf(r3), cf.ratio, ct.with(r3(ct.ratio/cf.ratio)))
	}
}

// scaling prints, for each benchmark whose name holds "threads=N" (N > 1),
// its median MB/s against the same benchmark's "threads=1".
func scaling(w io.Writer, t *table) {
	header := false
	for _, b := range t.benches {
		i := strings.Index(b.name, "threads=")
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimRightFunc(b.name[i+len("threads="):], func(r rune) bool { return r < '0' || r > '9' }))
		if err != nil || n <= 1 {
			continue
		}
		one := t.byName[b.name[:i]+"threads=1"+b.name[i+len("threads=")+len(strconv.Itoa(n)):]]
		if one == nil {
			continue
		}
		c, ok := t.compare(b, one, "MB/s")
		if !ok {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| scaling | threads=1 MB/s | threads=N MB/s | ratio | per round |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---|")
			header = true
		}
		x2 := func(x float64) string { return fmt.Sprintf("%.2f×", x) }
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", strings.TrimPrefix(b.name, "Benchmark"), format(c.b), format(c.a), c.with(x2(c.ratio)), c.rangeOf(x2))
	}
}

// s3Value is a sub-benchmark's key=value whose value names object storage
// (src=s3-cold, in=s3, out=s3).
var s3Value = regexp.MustCompile(`=s3[^,/]*`)

// storage prints, for each benchmark whose sub-benchmark name holds a
// value naming object storage (…/src=s3-cold, …/in=s3,out=local), its
// median MB/s against the same benchmark with every such value "local"
// (issue 20's loader, shard and ingest benchmarks on MinIO against the
// local disk): the share of the local throughput that object storage
// keeps.
func storage(w io.Writer, t *table) {
	shares(w, t, "| object storage | rounds with both | MB/s | local MB/s | of local | per round |", "MB/s", func(b *bench) *bench {
		first, rest, ok := strings.Cut(b.name, "/")
		if !ok || !s3Value.MatchString(rest) {
			return nil
		}
		return t.byName[first+"/"+s3Value.ReplaceAllString(rest, "=local")]
	})
}

// roundLog prints every unit's round: the load average at its start and
// end (which the unit's own work raises), the cores other work used, and
// whether its results were kept.
func roundLog(w io.Writer, t *table, maxLoad float64) {
	if len(t.records) == 1 {
		return
	}
	num := func(x float64, f string) string {
		if math.IsNaN(x) {
			return "?"
		}
		return fmt.Sprintf(f, x)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| round | unit | load1 before | load1 after | other work (cores) | s | results |\n")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---|")
	for _, r := range t.records[1:] {
		verdict := "kept"
		switch r.status {
		case loaded:
			verdict = fmt.Sprintf("discarded: under load (> %g)", maxLoad)
		case unrecord:
			verdict = "discarded: no load record"
			if !r.ended {
				verdict = "discarded: no end line"
			}
		}
		after, secs := "?", "?"
		if r.ended {
			after = num(r.end.load1, "%.2f")
			secs = num(r.end.wall-r.begin.wall, "%.1f")
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", r.round, r.unit, num(r.begin.load1, "%.2f"), after, num(r.others, "%.2f"), secs, verdict)
	}
}
