package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/train"
)

// runData is what the report reads of one finished run.
type runData struct {
	spec
	cfg                                        train.Config
	recs                                       []train.StepRecord
	stages                                     []train.StageStats
	flopsBlocks, flopsAll, fullBlocks, fullAll float64
	trainSeconds, wall                         float64
	finalVal                                   float64
	tokens                                     int64
}

func loadRun(dir string) (*runData, error) {
	r := &runData{}
	cfg, err := train.ReadRunConfig(dir)
	if err != nil {
		return nil, err
	}
	r.cfg = *cfg
	if r.recs, err = train.ReadMetrics(dir); err != nil {
		return nil, err
	}
	if len(r.recs) != r.cfg.Steps {
		return nil, fmt.Errorf("%s: %d of %d steps recorded: the run did not finish", dir, len(r.recs), r.cfg.Steps)
	}
	b, err := os.ReadFile(filepath.Join(dir, "stages.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &r.stages); err != nil {
		return nil, fmt.Errorf("%s/stages.json: %w", dir, err)
	}
	for _, x := range r.recs {
		r.flopsBlocks += x.FLOPs.Blocks
		r.flopsAll += x.FLOPs.All
		r.fullBlocks += x.FullFLOPs.Blocks
		r.fullAll += x.FullFLOPs.All
		r.trainSeconds += x.MS / 1000
		if x.ValLoss > 0 {
			r.finalVal = x.ValLoss
		}
		r.tokens = x.Tokens
	}
	if b, err := os.ReadFile(filepath.Join(dir, "wall.txt")); err == nil {
		fmt.Sscan(string(b), &r.wall)
	}
	return r, nil
}

// meanSpread is the mean of xs and half their range.
func meanSpread(xs ...float64) (mean, spread float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		mean += x / float64(len(xs))
		lo, hi = min(lo, x), max(hi, x)
	}
	return mean, (hi - lo) / 2
}

func writeReport(o options, specs []spec) error {
	runs := map[string]*runData{}
	var order []*runData
	for _, s := range specs {
		r, err := loadRun(filepath.Join(o.work, "runs", s.Name))
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		r.spec = s
		runs[s.Name] = r
		order = append(order, r)
	}
	if err := os.MkdirAll(o.plots, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(o.report), o.plots)
	if err != nil {
		return err
	}
	plots, err := writePlots(o.plots, order, runs["est-s1"])
	if err != nil {
		return err
	}
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	full1, full2, est1, est2, eq := runs["full-s1"], runs["full-s2"], runs["est-s1"], runs["est-s2"], runs["full-eqflops"]
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	p("# Does EST hold up? The experiment\n\n")
	p("Written by `make experiment` (internal/experiment) from the runs' own records on %s, estkit %s, %s/%s with %d CPUs (%s); do not edit by hand: rerun it.\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(commit)), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	m := full1.cfg.Model
	p("## Setup\n\n")
	p("- **Data**: every valid UTF-8 `.go` file of the Go toolchain's sources (GOROOT/src of %s), ingested with `estkit ingest --format jsonl` and sharded with the byte tokenizer (`--tokenizer bytes`: one id per byte, <|endoftext|> after each file); 1%% of files held out by hash as the validation split. %s\n",
		goVersion(), dataSize(full1.cfg.Data))
	p("- **Model**: GPT-2, byte level: %d blocks, width %d, %d heads, context %d, %d ids (the classifier is %.1f%% of a full step's FLOPs, so the blocks, which the paper counts, carry nearly all of them); fp32 on the CPU.\n",
		m.Layers, m.Channels, m.Heads, m.MaxT, m.Vocab, 100*(1-full1.fullBlocks/full1.fullAll))
	p("- **Training**: %d steps of %d×%d tokens (%.2fM tokens), AdamW (lr %.0e, warmup %d, linear decay to %.0e, weight decay %.1f, clip %.0f); validation loss every %d steps over %d batches drawn across the split, the same windows every time. Every run of a seed sees the same data in the same order.\n",
		full1.cfg.Steps, full1.cfg.Batch, full1.cfg.Seq, float64(full1.tokens)/1e6, full1.cfg.LR, full1.cfg.Warmup, full1.cfg.MinLR, full1.cfg.WeightDecay, full1.cfg.Clip, full1.cfg.EvalEvery, full1.cfg.EvalBatches)
	if est1.cfg.Schedule != nil {
		p("- **EST**: the paper's GPT-2 schedule (est-gpt2) scaled to the run: stages end at steps %v, rates (pH, pM, pL) %v; sampler defaults: a fixed number of blocks, each block its own heads and neurons, one draw per step, the dense AdamW update.\n", est1.cfg.Schedule.Ends, est1.cfg.Schedule.Rates)
	}
	p("\n## Runs\n\n")
	p("| run | what | steps | final val loss | block FLOPs saved | all FLOPs saved | training s | wall-clock saved vs full (same seed) | tokens/s per stage |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range order {
		base := full1
		if r.Seed == 2 {
			base = full2
		}
		var tps []string
		for _, s := range r.stages {
			tps = append(tps, fmt.Sprintf("%.0f", float64(s.Tokens)/s.Seconds))
		}
		p("| %s | %s | %d | %.4f | %.1f%% | %.1f%% | %.0f | %.1f%% | %s |\n", r.Name, r.What, r.cfg.Steps, r.finalVal,
			100*(1-r.flopsBlocks/base.fullBlocks), 100*(1-r.flopsAll/base.fullAll), r.trainSeconds, 100*(1-r.trainSeconds/base.trainSeconds), strings.Join(tps, " / "))
	}
	fm, fs := meanSpread(full1.finalVal, full2.finalVal)
	em, es := meanSpread(est1.finalVal, est2.finalVal)
	bm, _ := meanSpread(1-est1.flopsBlocks/full1.fullBlocks, 1-est2.flopsBlocks/full2.fullBlocks)
	am, _ := meanSpread(1-est1.flopsAll/full1.fullAll, 1-est2.flopsAll/full2.fullAll)
	wm, _ := meanSpread(1-est1.trainSeconds/full1.trainSeconds, 1-est2.trainSeconds/full2.trainSeconds)
	noise := math.Max(fs, es)
	p("\n## Headline\n\n")
	p("- **Equal steps**: EST %.4f ± %.4f against full training %.4f ± %.4f (mean ± half the range over seeds 1 and 2): %s.\n", em, es, fm, fs, compare(em-fm, noise))
	p("- **Equal FLOPs**: full training for EST's all-inclusive FLOPs (%d steps) reaches %.4f; EST (seed 1) %.4f: %s.\n", eq.cfg.Steps, eq.finalVal, est1.finalVal, compare(est1.finalVal-eq.finalVal, noise))
	p("- **Saved**: %.1f%% of the block FLOPs (the paper's convention; the paper's schedule is 26.7%% by construction), %.1f%% of all FLOPs, %.1f%% of the training wall-clock (mean over seeds).\n", 100*bm, 100*am, 100*wm)
	p("\n## The open choices\n\nEach variant is seed 1 against est-s1 (seed 1, the defaults); the seed spread above (±%.4f) is the yardstick.\n\n", noise)
	p("| choice | variant | final val loss | against est-s1 |\n|---|---|---:|---|\n")
	for _, c := range []struct{ name, choice string }{{"est-width", "which dimensions shrink"}, {"est-sampled", "AdamW on unsampled weights"}, {"est-bernoulli", "layer sampling"}, {"est-shared", "per-block independence"}} {
		r := runs[c.name]
		p("| %s | %s | %.4f | %s |\n", c.choice, r.What, r.finalVal, compare(r.finalVal-est1.finalVal, noise))
	}
	p("\nA default is supported by this run where its variant is not better beyond the seed spread; where the difference is inside the spread, the experiment does not decide.\n")
	p("\n## Plots\n\nValidation loss; dashed lines mark where est-s1's stages begin.\n\n")
	for _, pl := range plots {
		p("![%s](%s)\n\n", pl.title, filepath.ToSlash(filepath.Join(rel, pl.file)))
	}
	p("## What this does and does not show\n\n")
	p("- **Scale**: the paper trains GPT-2 124M on OpenWebText for 150k steps of 512×1024 tokens (about 39B tokens) and TinyLlama 1.1B; this is a %.1fM-parameter byte-level model on %.2fM tokens of Go source, about %.0e of the paper's tokens. Whether EST's loss matches full training depends on how far training is from convergence, which this scale cannot speak for.\n",
		float64(m.NumParams())/1e6, float64(full1.tokens)/1e6, float64(full1.tokens)/39e9)
	p("- **Noise**: two seeds per setting give a range, not a confidence interval; differences inside it are not evidence either way. The open choices have one seed each.\n")
	p("- **Wall-clock**: measured on a shared 2-vCPU machine, whose other load shifts it; the training time excludes evaluation (`ms` of metrics.jsonl). The realized saving is below the FLOPs saving by the step's fixed costs (AdamW over all weights of the running blocks, the classifier, memory traffic).\n")
	p("- **What it shows**: whether, on this data and at this scale, EST's schedule costs loss at equal steps, whether it beats a full model given the same FLOPs, and how much time estkit turns the FLOPs saving into.\n")
	if kept := keptSection(o.report); kept != "" {
		p("\n%s", kept)
	}
	return durable.WriteFile(filepath.Dir(o.report), filepath.Base(o.report), []byte(w.String()))
}

func goVersion() string {
	v, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "the installed Go"
	}
	return strings.TrimSpace(string(v))
}

// dataSize says how many documents and tokens each split of the run's
// token set holds.
func dataSize(data []train.Data) string {
	if len(data) == 0 {
		return ""
	}
	s, err := shards.Open(data[0].Dir, false)
	if err != nil {
		return ""
	}
	defer s.Close()
	var parts []string
	for _, name := range []string{shards.Train, shards.Val} {
		if sp := s.Manifest.Splits[name]; sp != nil {
			parts = append(parts, fmt.Sprintf("%s: %d files, %.1fM tokens", name, sp.Documents, float64(sp.Tokens)/1e6))
		}
	}
	return strings.Join(parts, "; ") + "."
}

// compare words a loss difference (subject minus reference) against the
// seed noise.
func compare(d, noise float64) string {
	switch {
	case math.Abs(d) <= noise:
		return fmt.Sprintf("a difference of %+.4f, within the seed spread", d)
	case d < 0:
		return fmt.Sprintf("lower by %.4f, beyond the seed spread", -d)
	default:
		return fmt.Sprintf("higher by %.4f, beyond the seed spread", d)
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

type plotFile struct{ file, title string }

// writePlots draws validation loss against steps, block FLOPs, all FLOPs
// and training wall-clock, one line per run, with est's stage starts.
func writePlots(dir string, runs []*runData, est *runData) ([]plotFile, error) {
	axes := []struct {
		file, title, label string
		x                  func(r *runData, upto int) float64
	}{
		{"val-steps.png", "validation loss against steps", "step", func(r *runData, i int) float64 { return float64(r.recs[i].Step + 1) }},
		{"val-block-flops.png", "validation loss against block FLOPs (the paper's convention)", "PFLOP (blocks)", func(r *runData, i int) float64 {
			var s float64
			for _, x := range r.recs[:i+1] {
				s += x.FLOPs.Blocks
			}
			return s / 1e15
		}},
		{"val-all-flops.png", "validation loss against all FLOPs", "PFLOP (all)", func(r *runData, i int) float64 {
			var s float64
			for _, x := range r.recs[:i+1] {
				s += x.FLOPs.All
			}
			return s / 1e15
		}},
		{"val-wallclock.png", "validation loss against training wall-clock", "seconds of training", func(r *runData, i int) float64 {
			var s float64
			for _, x := range r.recs[:i+1] {
				s += x.MS / 1000
			}
			return s
		}},
	}
	palette := []color.Color{
		color.RGBA{30, 90, 180, 255}, color.RGBA{200, 60, 30, 255}, color.RGBA{120, 160, 220, 255}, color.RGBA{240, 140, 110, 255},
		color.RGBA{60, 60, 60, 255}, color.RGBA{40, 150, 70, 255}, color.RGBA{150, 80, 170, 255}, color.RGBA{200, 160, 20, 255}, color.RGBA{20, 160, 160, 255},
	}
	var out []plotFile
	for _, a := range axes {
		p := plot.New()
		p.Title.Text = a.title
		p.X.Label.Text = a.label
		p.Y.Label.Text = "validation loss (nats per byte)"
		p.Legend.Top = true
		for k, r := range runs {
			var pts plotter.XYs
			for i, x := range r.recs {
				if x.ValLoss > 0 {
					pts = append(pts, plotter.XY{X: a.x(r, i), Y: x.ValLoss})
				}
			}
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			c := palette[k%len(palette)]
			l.Color, s.Color, s.Shape, s.Radius = c, c, draw.CircleGlyph{}, vg.Points(1.5)
			if strings.HasPrefix(r.Name, "full") {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(2)}
			}
			p.Add(l, s)
			p.Legend.Add(r.Name, l)
		}
		for i := 1; i < len(est.recs); i++ {
			if est.recs[i].Stage != est.recs[i-1].Stage {
				x := a.x(est, i-1)
				v, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
				if err != nil {
					return nil, err
				}
				v.Color, v.Dashes = color.Gray{Y: 150}, []vg.Length{vg.Points(3), vg.Points(3)}
				p.Add(v)
			}
		}
		if err := savePlot(dir, a.file, p); err != nil {
			return nil, err
		}
		out = append(out, plotFile{a.file, a.title})
	}
	return out, nil
}
