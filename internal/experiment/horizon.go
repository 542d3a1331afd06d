package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/estkit/estkit/internal/durable"
)

// The horizon study (`make experiment-horizon`): does EST's loss gap to
// full training shrink as training gets longer? One small model trained at
// horizons that grow ×4, at each: full training, EST (est-gpt2 scaled to
// the horizon), full training for EST's all-inclusive FLOPs and EST with
// `--est-update sampled`; at the longest horizon a second seed of full and
// EST training gives the seed spread.
//
// The model is smaller than `make experiment`'s (4 blocks of width 128,
// about 0.8M parameters in the blocks, against 8 of 256 and 6.3M): the
// question is about tokens per parameter, and a model 8 times smaller goes
// 8 times further in tokens per parameter for the same FLOPs, and each
// token costs about 7 times fewer FLOPs. Byte-level tokens (257 ids) keep
// the classifier, which EST does not shrink, a small part of a step, and
// need no tokenizer download. The recipe is make experiment's (AdamW, lr
// 1e-3 to 1e-4, warmup a twentieth of the run), so the two studies differ
// in the model and the horizon only.
const (
	horizonModelJSON = `{"model": {"Vocab": 257, "Padded": 384, "Layers": 4, "Heads": 4, "Channels": 128, "MaxT": 256}}`
	horizonTokPerSec = 15000 // a full step's rate here, for the expected duration
)

// hspec is one run of the horizon study at one horizon.
type hspec struct {
	Name, What string
	Seed       int
	Args       []string
	EqualFLOPs bool // steps from est-s1's all-inclusive FLOPs at the same horizon
	Longest    bool // only at the longest horizon
}

func horizonSpecs() []hspec {
	est := []string{"--est", "est-gpt2"}
	off := []string{"--est", "off"}
	return []hspec{
		{Name: "full-s1", What: "full model", Seed: 1, Args: off},
		{Name: "est-s1", What: "EST est-gpt2", Seed: 1, Args: est},
		{Name: "full-eqflops", What: "full model for est-s1's FLOPs", Seed: 1, Args: off, EqualFLOPs: true},
		{Name: "est-sampled", What: "EST, --est-update sampled", Seed: 1, Args: append(slices.Clone(est), "--est-update", "sampled")},
		{Name: "full-s2", What: "full model, seed 2", Seed: 2, Args: off, Longest: true},
		{Name: "est-s2", What: "EST est-gpt2, seed 2", Seed: 2, Args: est, Longest: true},
		// With 4 blocks, pL = 0.5 drops half the depth at every step of
		// stage 1: this run tells that part of EST from the rest.
		{Name: "est-width", What: "EST without layer sampling: heads and neurons at 0.5 in every block, est-gpt2's stage ends", Seed: 1,
			Args: []string{"--est-rates", "0.5:0.5:1,0.5:0.5:1,1:1:1"}, Longest: true},
	}
}

// horizon is one training length of the study.
type horizon struct {
	label  string // 0.5M
	tokens float64
	steps  int
}

// parseHorizons reads -horizons: training lengths in millions of tokens.
func parseHorizons(s string, scale float64) ([]horizon, error) {
	var hs []horizon
	for _, f := range strings.Split(s, ",") {
		m, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(m > 0) || math.IsInf(m, 0) {
			return nil, fmt.Errorf("-horizons: %q is not a number of millions of tokens above 0", f)
		}
		// Counted in float64 first: a huge horizon would overflow the
		// int conversion (1e300 became the 10-step minimum), and one
		// past estkit train's limit would fail only after the data.
		fl := m*1e6*scale/(batch*seq) + 0.5
		if fl > maxSteps {
			return nil, fmt.Errorf("-horizons: %q is %.3g steps of %d×%d tokens, more than estkit trains (%d)", f, fl, batch, seq, maxSteps)
		}
		steps := max(10, int(fl))
		hs = append(hs, horizon{label: strconv.FormatFloat(m, 'g', -1, 64) + "M", tokens: float64(steps * batch * seq), steps: steps})
	}
	slices.SortFunc(hs, func(a, b horizon) int { return a.steps - b.steps })
	for i := 1; i < len(hs); i++ {
		if hs[i].steps == hs[i-1].steps {
			return nil, fmt.Errorf("-horizons: %s and %s give the same number of steps", hs[i-1].label, hs[i].label)
		}
	}
	return hs, nil
}

// hrun is one run of the study: a spec at a horizon.
type hrun struct {
	hspec
	h   horizon
	dir string
}

func (r hrun) id() string { return "h" + r.h.label + "-" + r.Name }

func horizonRuns(work string, hs []horizon) []hrun {
	var out []hrun
	for i, h := range hs {
		for _, s := range horizonSpecs() {
			if s.Longest && i != len(hs)-1 {
				continue
			}
			r := hrun{hspec: s, h: h}
			r.dir = filepath.Join(work, "horizon", "runs", r.id())
			out = append(out, r)
		}
	}
	return out
}

// runRecord, saved beside each run directory as NAME.json, names the
// configuration the run was started with: a run whose record matches is
// reused when complete and resumed (estkit train --resume) when not.
type runRecord struct {
	Hash string   `json:"hash"`
	Args []string `json:"args"`
}

func runHorizon(o options) error {
	hs, err := parseHorizons(o.horizons, o.scale)
	if err != nil {
		return err
	}
	runs := horizonRuns(o.work, hs)
	if !o.reportOnly {
		var work float64 // in a full model's tokens: EST's runs and the equal-FLOPs one cost about 0.72 of it
		for _, r := range runs {
			f := 0.72
			if strings.HasPrefix(r.Name, "full") && !r.EqualFLOPs {
				f = 1
			}
			work += r.h.tokens * f
		}
		fmt.Printf("Horizon study: %d runs of a byte-level GPT-2 (4 blocks, width 128) at horizons of %s tokens.\n", len(runs), labels(hs))
		fmt.Printf("Expected duration on 2 quiet cores: about %.0f minutes (finished runs are reused, interrupted ones resumed).\n\n", work/horizonTokPerSec/60+3)
		tok, err := prepareData(o)
		if err != nil {
			return err
		}
		conf := filepath.Join(o.work, "horizon", "model.json")
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			return err
		}
		if err := durable.WriteFile(filepath.Dir(conf), filepath.Base(conf), []byte(horizonModelJSON)); err != nil {
			return err
		}
		for i, r := range runs {
			if err := trainHorizonRun(o, r, i, len(runs), conf, tok); err != nil {
				return err
			}
		}
	}
	return writeHorizonReport(o, hs, runs)
}

func labels(hs []horizon) string {
	var l []string
	for _, h := range hs {
		l = append(l, h.label)
	}
	return strings.Join(l, ", ")
}

func trainHorizonRun(o options, r hrun, i, n int, conf, tok string) error {
	steps := r.h.steps
	if r.EqualFLOPs {
		est, err := loadRun(filepath.Join(filepath.Dir(r.dir), "h"+r.h.label+"-est-s1"))
		if err != nil {
			return fmt.Errorf("%s needs est-s1 at the same horizon first: %w", r.id(), err)
		}
		steps = max(1, int(float64(r.h.steps)*est.flopsAll/est.fullAll+0.5))
	}
	every := max(1, r.h.steps/8)
	args := []string{"train", "--config", conf, "--data", tok, "--out", r.dir, "--steps", fmt.Sprint(steps),
		"--batch", fmt.Sprint(batch), "--seq", fmt.Sprint(seq), "--lr", "1e-3", "--min-lr", "1e-4",
		"--warmup", fmt.Sprint(max(1, r.h.steps/20)), "--seed", fmt.Sprint(r.Seed),
		"--eval-every", fmt.Sprint(every), "--eval-batches", "8", "--checkpoint-every", fmt.Sprint(every)}
	if slices.Contains(r.Args, "--est-rates") {
		args = append(args, "--est-stages", scaledEnds(steps)) // est-gpt2's stage ends at this horizon
	}
	args = append(args, r.Args...)
	// The hash covers what decides the run's numbers: the arguments but
	// --out, and the model's shape.
	h := sha256.New()
	for _, a := range append(slices.Clone(args[:5]), args[7:]...) {
		fmt.Fprintf(h, "%q\n", a)
	}
	// The shape enters as the text the file had before keys were matched
	// exactly (its key then spelled "Model"), so that the runs recorded
	// under that hash are still reused.
	h.Write([]byte(strings.Replace(horizonModelJSON, `"model"`, `"Model"`, 1)))
	rec := runRecord{Hash: hex.EncodeToString(h.Sum(nil))[:16], Args: args}
	recFile := r.dir + ".json"
	var old runRecord
	if b, err := os.ReadFile(recFile); err == nil {
		_ = json.Unmarshal(b, &old) // an unreadable record is no match
	}
	fmt.Printf("== run %d/%d: %s (%s, %s tokens), %d steps", i+1, n, r.id(), r.What, r.h.label, steps)
	if old.Hash == rec.Hash {
		if _, err := loadRun(r.dir); err == nil {
			fmt.Println(": done before, reused")
			return nil
		}
		if _, err := os.Stat(filepath.Join(r.dir, "config.json")); err == nil {
			fmt.Println(": resumed")
			return command(o.estkit, append(args, "--resume")...)
		}
	}
	fmt.Println()
	// The run directory and its record are the study's own, under -work.
	if err := os.RemoveAll(r.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := durable.WriteFile(filepath.Dir(recFile), filepath.Base(recFile), append(b, '\n')); err != nil {
		return err
	}
	if err := command(o.estkit, args...); err != nil {
		return fmt.Errorf("run %s: %w", r.id(), err)
	}
	return nil
}

// hpoint is what the report computes at one horizon.
type hpoint struct {
	h                               horizon
	full, est, eq, sampled          *runData
	full2, est2, width              *runData // the longest horizon only
	stepsGap, flopsGap, sampledGap  float64
	sampledFlopsGap                 float64
	blockSaved, allSaved, wallSaved float64
}

func writeHorizonReport(o options, hs []horizon, runs []hrun) error {
	data := map[string]*runData{}
	for _, r := range runs {
		d, err := loadRun(r.dir)
		if err != nil {
			return fmt.Errorf("report: %s: %w", r.id(), err)
		}
		d.spec = spec{Name: r.Name, What: r.What, Seed: r.Seed}
		data[r.id()] = d
	}
	get := func(h horizon, name string) *runData { return data["h"+h.label+"-"+name] }
	var pts []hpoint
	for _, h := range hs {
		p := hpoint{h: h, full: get(h, "full-s1"), est: get(h, "est-s1"), eq: get(h, "full-eqflops"), sampled: get(h, "est-sampled"),
			full2: get(h, "full-s2"), est2: get(h, "est-s2"), width: get(h, "est-width")}
		p.stepsGap = p.est.finalVal - p.full.finalVal
		p.flopsGap = p.est.finalVal - p.eq.finalVal
		p.sampledGap = p.sampled.finalVal - p.full.finalVal
		p.sampledFlopsGap = p.sampled.finalVal - p.eq.finalVal
		p.blockSaved = 1 - p.est.flopsBlocks/p.full.fullBlocks
		p.allSaved = 1 - p.est.flopsAll/p.full.fullAll
		p.wallSaved = 1 - p.est.trainSeconds/p.full.trainSeconds
		pts = append(pts, p)
	}
	last := pts[len(pts)-1]
	_, fs := meanSpread(last.full.finalVal, last.full2.finalVal)
	_, es := meanSpread(last.est.finalVal, last.est2.finalVal)
	noise := math.Max(fs, es)
	gap2 := last.est2.finalVal - last.full2.finalVal
	m := last.full.cfg.Model
	params := float64(m.NumParams())
	blockParams := params - float64(m.Padded*m.Channels+m.MaxT*m.Channels+2*m.Channels)

	if err := os.MkdirAll(o.plots, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(o.report), o.plots)
	if err != nil {
		return err
	}
	plots, err := writeHorizonPlots(o.plots, pts, noise)
	if err != nil {
		return err
	}

	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	p("%s\n## Does the gap close with training length? The horizon study\n\n", horizonBegin)
	p("Written by `make experiment-horizon` (internal/experiment, horizon.go) from the runs' own records on %s, estkit %s, %s/%s with %d CPUs (%s); do not edit by hand: rerun it (finished runs are reused, so a rerun with more horizons, `EXPERIMENT_FLAGS=-horizons 0.5,2,8,32`, only trains what is new).\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(commit)), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	p("### Setup\n\n")
	p("- **Data**: the same token set as above (the Go toolchain's sources, byte tokens); every run of a seed sees the same data in the same order, and no horizon repeats data (the longest reads %.1fM tokens of the train split; %s).\n", last.h.tokens/1e6, strings.TrimSuffix(dataSize(last.full.cfg.Data), "."))
	p("- **Model**: GPT-2, byte level: %d blocks, width %d, %d heads, context %d: %.2fM parameters, %.2fM of them in the blocks (the paper's FLOPs convention counts the blocks). Smaller than the experiment above so that two cores reach further in tokens per parameter: the question is about the length of training relative to the model.\n",
		m.Layers, m.Channels, m.Heads, m.MaxT, params/1e6, blockParams/1e6)
	p("- **Training**: at each horizon, steps of %d×%d tokens, AdamW (lr %.0e, warmup a twentieth of the run, linear decay to %.0e, weight decay %.1f, clip %.0f); validation loss every eighth of the run over %d batches, the same windows every time.\n",
		last.full.cfg.Batch, last.full.cfg.Seq, last.full.cfg.LR, last.full.cfg.MinLR, last.full.cfg.WeightDecay, last.full.cfg.Clip, last.full.cfg.EvalBatches)
	p("- **Runs at each horizon**: full training; EST with the paper's GPT-2 schedule (est-gpt2: stages end at 20k/70k/150k of 150k steps, rates 0.5:0.5:0.5, 0.5:0.5:1, 1:1:1) scaled to the horizon's steps; full training for EST's all-inclusive FLOPs (fewer steps, its own schedule scaled to them); EST with `--est-update sampled`. At the longest horizon a second seed of full and EST training.\n\n")
	p("### Results\n\n")
	p("Gaps are EST's final validation loss minus the reference's (nats per byte; negative: EST is better). Equal steps: against full training of the same length. Equal FLOPs: against full training for EST's FLOPs.\n\n")
	p("| horizon | tokens | tokens per parameter | steps | full | EST | full, EST's FLOPs | EST sampled | gap, equal steps | gap, equal FLOPs | sampled: gap, equal steps | sampled: gap, equal FLOPs | block FLOPs saved | wall-clock saved (see the caveat) |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, q := range pts {
		p("| %s | %.2fM | %.2f | %d | %.4f | %.4f | %.4f | %.4f | %+.4f | %+.4f | %+.4f | %+.4f | %.1f%% | %.1f%% |\n",
			q.h.label, q.h.tokens/1e6, q.h.tokens/params, q.h.steps, q.full.finalVal, q.est.finalVal, q.eq.finalVal, q.sampled.finalVal,
			q.stepsGap, q.flopsGap, q.sampledGap, q.sampledFlopsGap, 100*q.blockSaved, 100*q.wallSaved)
	}
	p("\n**Seed spread** at %s: full training %.4f (seed 1) and %.4f (seed 2), EST %.4f and %.4f; the equal-steps gap is %+.4f with seed 1 and %+.4f with seed 2. Half the larger range, ±%.4f, is the yardstick for every difference below (one seed elsewhere: shorter horizons are cheaper but no less noisy).\n\n",
		last.h.label, last.full.finalVal, last.full2.finalVal, last.est.finalVal, last.est2.finalVal, last.stepsGap, gap2, noise)
	for _, pl := range plots {
		p("![%s](%s)\n\n", pl.title, filepath.ToSlash(filepath.Join(rel, pl.file)))
	}
	p("### What the trend says\n\n")
	var xs, eqs, sts []float64
	for _, q := range pts {
		xs = append(xs, math.Log(q.h.tokens)/math.Log(4))
		eqs = append(eqs, q.flopsGap)
		sts = append(sts, q.stepsGap)
	}
	eqSlope, eqAt := fitLine(xs, eqs)
	stSlope, _ := fitLine(xs, sts)
	first := pts[0]
	each := func(gap func(hpoint) float64) string {
		var l []string
		for _, q := range pts {
			l = append(l, fmt.Sprintf("%+.4f at %s", gap(q), q.h.label))
		}
		return strings.Join(l, ", ")
	}
	p("- **Equal FLOPs**: the gap is %s (%.2f to %.2f tokens per parameter); from the first horizon to the last %s. A least-squares line through the %d horizons moves it by %+.4f per ×4 of tokens.\n",
		each(func(q hpoint) float64 { return q.flopsGap }), first.h.tokens/params, last.h.tokens/params, trendWords(first.flopsGap, last.flopsGap, noise), len(pts), eqSlope)
	p("- **Equal steps**: %s (%+.4f per ×4 of tokens); from the first to the last %s.\n", each(func(q hpoint) float64 { return q.stepsGap }), stSlope, trendWords(first.stepsGap, last.stepsGap, noise))
	p("- **`--est-update sampled`** against full training for the same FLOPs: %+.4f at %s, %+.4f at %s; against dense EST at the longest horizon: %s.\n",
		first.sampledFlopsGap, first.h.label, last.sampledFlopsGap, last.h.label, compare(last.sampled.finalVal-last.est.finalVal, noise))
	if w := last.width; w != nil {
		p("- **Layer sampling**: at %s, EST without it (heads and neurons at 0.5 in every block, the same stage ends; %.1f%% of the block FLOPs saved against est-s1's %.1f%%) reaches %.4f against est-s1's %.4f: %s. With 4 blocks, est-gpt2's first stage runs 2 of them a step. Full training for est-s1's FLOPs (%.1f%% of the full run's, fewer than this run's %.1f%%) reaches %.4f, %+.4f from this run.\n",
			last.h.label, 100*(1-w.flopsBlocks/last.full.fullBlocks), 100*last.blockSaved, w.finalVal, last.est.finalVal, compare(w.finalVal-last.est.finalVal, noise),
			100*last.eq.flopsAll/last.full.fullAll, 100*w.flopsAll/last.full.fullAll, last.eq.finalVal, w.finalVal-last.eq.finalVal)
	}
	p("- **Wall-clock**: EST saved %s of the training time at the %d horizons (steps' own time, evaluation excluded), for %.1f%% of the block FLOPs.\n", wallList(pts), len(pts), 100*last.blockSaved)
	target := 20 * params
	fours := math.Log(target/last.h.tokens) / math.Log(4)
	p("- **The paper's regime**: about 20 tokens per parameter and beyond (GPT-2 124M on 39B tokens is 300 per parameter). Here that is %.1fM tokens, %.1f factors of 4 past the longest horizon. ",
		target/1e6, fours)
	switch {
	case last.flopsGap <= noise:
		p("At the longest horizon EST is already level with or better than full training for its FLOPs (%s), so the paper's regime is not needed for that; the line gives %+.4f at 20 tokens per parameter.\n",
			compare(last.flopsGap, noise), eqAt(math.Log(target)/math.Log(4)))
	case eqSlope < 0:
		p("Were the equal-FLOPs gap to keep shrinking by %.4f per ×4 (a straight line in log tokens, which nothing guarantees), it would reach zero after %.1f more factors of 4, %s; at 20 tokens per parameter the line gives %+.4f.\n",
			-eqSlope, last.flopsGap/-eqSlope, tokensAt(last.h.tokens*math.Pow(4, last.flopsGap/-eqSlope), params), eqAt(math.Log(target)/math.Log(4)))
	default:
		p("The line gives %+.4f there; it does not point toward a closing gap on this evidence.\n", eqAt(math.Log(target)/math.Log(4)))
	}
	p("- **Wall-clock caveat**: the runs ran one after another on a shared 2-vCPU machine; other work on it during a full run and not during its EST run (or the reverse) shifts the saving, which can then exceed the FLOPs saved. The FLOPs columns are exact; the time a step takes at each of EST's rates, measured quietly and side by side, is `BenchmarkSmallStep/horizon` in docs/PERF.md.\n")
	p("- **What it does not say**: %d horizons, one seed but at the longest, one model and one dataset; %.2f tokens per parameter at most, far below the paper's runs, so the extrapolation above is arithmetic, not evidence. The learning-rate schedule and the EST stages scale with each horizon, as they would in a real run planned for that length.\n\n",
		len(pts), last.h.tokens/params)
	p("%s\n", horizonEnd)
	return replaceSection(o.report, w.String())
}

const (
	horizonBegin = "<!-- horizon study: written by make experiment-horizon -->"
	horizonEnd   = "<!-- end of the horizon study -->"
)

// replaceSection puts the horizon study's section into the report: in
// place of the one there, or at its end.
func replaceSection(report, section string) error {
	old, err := os.ReadFile(report)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	doc := string(old)
	i, j, err := sectionBounds(doc)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", report, err)
	case i >= 0:
		doc = doc[:i] + section + doc[j:]
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return durable.WriteFile(filepath.Dir(report), filepath.Base(report), []byte(doc))
}

// keptSection is the horizon study's section of the report at path, if any,
// so that make experiment's rewrite of the report keeps it.
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	doc := string(b)
	if i, j, err := sectionBounds(doc); err == nil && i >= 0 {
		return doc[i:j]
	}
	return ""
}

// sectionBounds is where the horizon study's section lies in doc, its end
// marker's line included; i < 0 where doc has none.
func sectionBounds(doc string) (i, j int, err error) {
	i = strings.Index(doc, horizonBegin)
	if i < 0 {
		return -1, -1, nil
	}
	k := strings.Index(doc[i:], horizonEnd)
	if k < 0 {
		return 0, 0, fmt.Errorf("the horizon study's section has no end marker (%q)", horizonEnd)
	}
	return i, min(len(doc), i+k+len(horizonEnd)+1), nil
}

// fitLine is the least-squares line through (x, y): its slope and the line.
func fitLine(x, y []float64) (float64, func(float64) float64) {
	var mx, my float64
	for i := range x {
		mx += x[i] / float64(len(x))
		my += y[i] / float64(len(y))
	}
	var sxy, sxx float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
	}
	slope := 0.0
	if sxx > 0 {
		slope = sxy / sxx
	}
	return slope, func(v float64) float64 { return my + slope*(v-mx) }
}

func trendWords(a, b, noise float64) string {
	switch {
	case math.Abs(b-a) <= noise:
		return fmt.Sprintf("a change of %+.4f, within the seed spread: no trend this study can see", b-a)
	case b < a:
		return fmt.Sprintf("it shrinks by %.4f, beyond the seed spread", a-b)
	default:
		return fmt.Sprintf("it grows by %.4f, beyond the seed spread", b-a)
	}
}

func wallList(pts []hpoint) string {
	var s []string
	for _, q := range pts {
		s = append(s, fmt.Sprintf("%.1f%%", 100*q.wallSaved))
	}
	return strings.Join(s, ", ")
}

func tokensAt(t, params float64) string {
	return fmt.Sprintf("about %.3gM tokens (%.0f per parameter)", t/1e6, t/params)
}

// writeHorizonPlots draws the gaps against tokens (log scale) and each
// horizon's validation curves with EST's stage boundaries.
func writeHorizonPlots(dir string, pts []hpoint, noise float64) ([]plotFile, error) {
	var out []plotFile
	p := plot.New()
	p.Title.Text = "EST's loss gap against training length"
	p.X.Label.Text = "tokens of training (log scale)"
	p.Y.Label.Text = "EST minus reference, final val loss (nats per byte)"
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, q := range pts {
		ticks = append(ticks, plot.Tick{Value: q.h.tokens, Label: fmt.Sprintf("%.3gM", q.h.tokens/1e6)})
	}
	p.X.Tick.Marker = ticks
	p.Legend.Left = true
	series := []struct {
		name string
		y    func(hpoint) float64
		c    color.Color
	}{
		{"equal FLOPs", func(q hpoint) float64 { return q.flopsGap }, color.RGBA{200, 60, 30, 255}},
		{"equal steps", func(q hpoint) float64 { return q.stepsGap }, color.RGBA{30, 90, 180, 255}},
		{"sampled update, equal FLOPs", func(q hpoint) float64 { return q.sampledFlopsGap }, color.RGBA{40, 150, 70, 255}},
	}
	for _, s := range series {
		var xy plotter.XYs
		var errs plotter.YErrors
		for _, q := range pts {
			xy = append(xy, plotter.XY{X: q.h.tokens, Y: s.y(q)})
			errs = append(errs, struct{ Low, High float64 }{noise, noise})
		}
		l, pt, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		l.Color, pt.Color, pt.Shape = s.c, s.c, draw.CircleGlyph{}
		p.Add(l, pt)
		p.Legend.Add(s.name, l)
		e, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{xy, errs})
		if err != nil {
			return nil, err
		}
		e.Color = s.c
		p.Add(e)
	}
	zero, err := plotter.NewLine(plotter.XYs{{X: pts[0].h.tokens, Y: 0}, {X: pts[len(pts)-1].h.tokens, Y: 0}})
	if err != nil {
		return nil, err
	}
	zero.Color, zero.Dashes = color.Gray{Y: 120}, []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(zero)
	if err := savePlot(dir, "horizon-gap.png", p); err != nil {
		return nil, err
	}
	out = append(out, plotFile{"horizon-gap.png", "EST's final validation loss minus the reference's against training tokens (error bars: the seed spread at the longest horizon)"})
	for _, q := range pts {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("validation loss, %s tokens", q.h.label)
		p.X.Label.Text = "tokens of training"
		p.Y.Label.Text = "validation loss (nats per byte)"
		p.Legend.Top = true
		runs := []*runData{q.full, q.est, q.eq, q.sampled}
		names := []string{"full", "EST", "full, EST's FLOPs", "EST sampled"}
		if q.full2 != nil {
			runs, names = append(runs, q.full2, q.est2), append(names, "full, seed 2", "EST, seed 2")
		}
		if q.width != nil {
			runs, names = append(runs, q.width), append(names, "EST without layer sampling")
		}
		palette := []color.Color{color.RGBA{30, 90, 180, 255}, color.RGBA{200, 60, 30, 255}, color.RGBA{60, 60, 60, 255}, color.RGBA{40, 150, 70, 255}, color.RGBA{120, 160, 220, 255}, color.RGBA{240, 140, 110, 255}, color.RGBA{150, 80, 170, 255}}
		for k, r := range runs {
			var xy plotter.XYs
			for _, x := range r.recs {
				if x.ValLoss > 0 {
					xy = append(xy, plotter.XY{X: float64(x.Tokens), Y: x.ValLoss})
				}
			}
			l, s, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			l.Color, s.Color, s.Shape, s.Radius = palette[k], palette[k], draw.CircleGlyph{}, vg.Points(1.5)
			if strings.HasPrefix(names[k], "full") {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(2)}
			}
			p.Add(l, s)
			p.Legend.Add(names[k], l)
		}
		for i := 1; i < len(q.est.recs); i++ {
			if q.est.recs[i].Stage != q.est.recs[i-1].Stage {
				x := float64(q.est.recs[i-1].Tokens)
				v, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
				if err != nil {
					return nil, err
				}
				v.Color, v.Dashes = color.Gray{Y: 150}, []vg.Length{vg.Points(3), vg.Points(3)}
				p.Add(v)
			}
		}
		file := "horizon-val-" + q.h.label + ".png"
		if err := savePlot(dir, file, p); err != nil {
			return nil, err
		}
		out = append(out, plotFile{file, fmt.Sprintf("validation loss at the %s-token horizon; dashed grey lines: EST's stage boundaries", q.h.label)})
	}
	return out, nil
}

func savePlot(dir, file string, p *plot.Plot) error {
	var buf bytes.Buffer
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(&buf); err != nil {
		return err
	}
	return durable.WriteFile(dir, file, buf.Bytes())
}
