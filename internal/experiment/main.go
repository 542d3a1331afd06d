// Command experiment is `make experiment`: EST against full training at
// equal steps and at equal FLOPs, on real text every machine building
// estkit has (the Go toolchain's own sources), with the estkit binary as a
// user runs it. It builds the corpus, ingests and shards it, trains the runs
// (printing the expected duration first, then each run's progress), and
// writes the report (Markdown and PNG plots) from the runs' records.
//
//	go run ./internal/experiment -estkit bin/estkit -work .experiment -report docs/EXPERIMENTS.md
//
// -scale shrinks every run's steps (a smoke test: -scale 0.02); -report-only
// rewrites the report from finished runs.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

func main() {
	o := options{}
	flag.StringVar(&o.estkit, "estkit", "bin/estkit", "the estkit binary")
	flag.StringVar(&o.work, "work", ".experiment", "working directory (corpus, shards, runs)")
	flag.StringVar(&o.report, "report", "docs/EXPERIMENTS.md", "report to write")
	flag.StringVar(&o.plots, "plots", "docs/experiments", "directory of the report's plots")
	flag.Float64Var(&o.scale, "scale", 1, "fraction of each run's steps (1: the full experiment)")
	flag.BoolVar(&o.reportOnly, "report-only", false, "only rewrite the report from the runs in -work")
	flag.StringVar(&o.study, "study", "est", "est: EST against full training (make experiment); horizon: the gap against training length (make experiment-horizon)")
	flag.StringVar(&o.horizons, "horizons", "0.5,2,8", "-study horizon: the training lengths, millions of tokens")
	flag.Parse()
	run := run
	if err := checkScale(o.scale); err != nil {
		fmt.Fprintln(os.Stderr, "experiment:", err)
		os.Exit(2)
	}
	switch o.study {
	case "est":
	case "horizon":
		run = runHorizon
	default:
		fmt.Fprintf(os.Stderr, "experiment: -study %q: est or horizon\n", o.study)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "experiment:", err)
		os.Exit(1)
	}
}

// checkScale refuses a -scale that is not a number above 0, or that makes
// a run longer than estkit trains: the steps computed from it would be the
// 10-step minimum (NaN, 0, negatives) or overflow (Inf, 1e300), silently.
func checkScale(scale float64) error {
	if !(scale > 0) || float64(fullSteps)*scale > maxSteps {
		return fmt.Errorf("-scale %v: want a number above 0 and at most %d (1: the full experiment)", scale, maxSteps/fullSteps)
	}
	return nil
}

// maxSteps is the most steps estkit train accepts (train's Config.Check).
const maxSteps = 1 << 24

type options struct {
	estkit, work, report, plots string
	study, horizons             string
	scale                       float64
	reportOnly                  bool
}

// The model: a byte-level GPT-2 (257 ids), 8 blocks of width 256, context
// 256. With 257 ids the classifier is about 2% of a step's FLOPs, so the
// blocks, which the paper's accounting counts, carry nearly all of them.
const (
	modelJSON = `{"model": {"Vocab": 257, "Padded": 384, "Layers": 8, "Heads": 8, "Channels": 256, "MaxT": 256}}`
	fullSteps = 320  // per run at -scale 1: 0.66M tokens, about 7 minutes here
	stepSecs  = 1.25 // a full step here, for the expected duration
	batch     = 8
	seq       = 256
)

// spec is one training run of the experiment.
type spec struct {
	Name, What string
	Seed       int
	Steps      int      // 0: fullSteps·scale
	Args       []string // EST and sampler flags
	EqualFLOPs bool     // steps from est-s1's all-inclusive FLOPs
}

func specs() []spec {
	est := []string{"--est", "est-gpt2"}
	return []spec{
		{Name: "full-s1", What: "full model, seed 1", Seed: 1, Args: []string{"--est", "off"}},
		{Name: "est-s1", What: "EST est-gpt2, seed 1", Seed: 1, Args: est},
		{Name: "full-s2", What: "full model, seed 2", Seed: 2, Args: []string{"--est", "off"}},
		{Name: "est-s2", What: "EST est-gpt2, seed 2", Seed: 2, Args: est},
		{Name: "full-eqflops", What: "full model for est-s1's FLOPs (fewer steps), seed 1", Seed: 1, Args: []string{"--est", "off"}, EqualFLOPs: true},
		{Name: "est-width", What: "width only: heads and neurons at 0.5, every block, est-gpt2's stage ends", Seed: 1,
			Args: []string{"--est-rates", "0.5:0.5:1,0.5:0.5:1,1:1:1"}},
		{Name: "est-sampled", What: "EST, AdamW on the sampled heads and neurons only (--est-update sampled)", Seed: 1, Args: append(slices.Clone(est), "--est-update", "sampled")},
		{Name: "est-bernoulli", What: "EST, each block kept with probability pL (--layer-mode bernoulli)", Seed: 1, Args: append(slices.Clone(est), "--layer-mode", "bernoulli")},
		{Name: "est-shared", What: "EST, one draw of heads and neurons for all blocks (--shared)", Seed: 1, Args: append(slices.Clone(est), "--shared")},
	}
}

func run(o options) error {
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	steps := max(10, int(float64(fullSteps)*o.scale))
	runs := specs()
	if !o.reportOnly {
		fmt.Printf("EST experiment: %d runs of a byte-level GPT-2 (8 blocks, width 256) on the Go toolchain's sources, %d steps of %d×%d tokens each.\n",
			len(runs), steps, batch, seq)
		full := float64(steps) * stepSecs / 60
		fmt.Printf("Expected duration on 2 cores: about %.0f minutes (a full-model run about %.0f, the EST runs about 3/4 of that, evaluations and data 5).\n\n", 7.4*full+5, full)
		tok, err := prepareData(o)
		if err != nil {
			return err
		}
		conf := filepath.Join(o.work, "model.json")
		if err := os.WriteFile(conf, []byte(modelJSON), 0o644); err != nil {
			return err
		}
		for i, s := range runs {
			n := steps
			if s.EqualFLOPs {
				r, err := loadRun(filepath.Join(o.work, "runs", "est-s1"))
				if err != nil {
					return fmt.Errorf("%s needs est-s1 first: %w", s.Name, err)
				}
				n = max(1, int(float64(steps)*r.flopsAll/r.fullAll+0.5))
			}
			fmt.Printf("== run %d/%d: %s (%s), %d steps\n", i+1, len(runs), s.Name, s.What, n)
			out := filepath.Join(o.work, "runs", s.Name)
			if err := os.RemoveAll(out); err != nil {
				return err
			}
			args := []string{"train", "--config", conf, "--data", tok, "--out", out, "--steps", fmt.Sprint(n),
				"--batch", fmt.Sprint(batch), "--seq", fmt.Sprint(seq), "--lr", "1e-3", "--min-lr", "1e-4",
				"--warmup", fmt.Sprint(max(1, steps/20)), "--seed", fmt.Sprint(s.Seed),
				"--eval-every", fmt.Sprint(max(1, steps/8)), "--eval-batches", "8"}
			if slices.Contains(s.Args, "--est-rates") {
				// est-gpt2's stage ends, scaled to this run
				args = append(args, "--est-stages", scaledEnds(n))
			}
			args = append(args, s.Args...)
			start := time.Now()
			if err := command(o.estkit, args...); err != nil {
				return fmt.Errorf("run %s: %w", s.Name, err)
			}
			if err := os.WriteFile(filepath.Join(out, "wall.txt"), []byte(fmt.Sprintf("%.3f\n", time.Since(start).Seconds())), 0o644); err != nil {
				return err
			}
		}
	}
	return writeReport(o, runs)
}

// scaledEnds are est-gpt2's stage ends (20k, 70k, 150k of 150k) at steps.
func scaledEnds(steps int) string {
	a, b := max(1, int(float64(steps)*20/150+0.5)), int(float64(steps)*70/150+0.5)
	b = max(b, a+1)
	return fmt.Sprintf("%d,%d,%d", a, b, max(steps, b+1))
}

func command(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// prepareData writes the corpus (every .go file under GOROOT/src, valid
// UTF-8, in path order, as JSON lines with the path as metadata), ingests
// it and shards it with the byte tokenizer; it returns the token set. Each
// step is skipped when its output is up to date (estkit ingest and shard
// do no work on unchanged inputs).
func prepareData(o options) (string, error) {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	corpus := filepath.Join(o.work, "corpus", "gosrc.jsonl")
	if _, err := os.Stat(corpus); err != nil {
		if err := os.MkdirAll(filepath.Dir(corpus), 0o755); err != nil {
			return "", err
		}
		tmp := corpus + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return "", err
		}
		w := bufio.NewWriter(f)
		var files, bytes int
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil || len(b) == 0 || !utf8.Valid(b) {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			line, _ := json.Marshal(map[string]string{"text": string(b), "path": filepath.ToSlash(rel)})
			files++
			bytes += len(b)
			_, err = w.Write(append(line, '\n'))
			return err
		})
		if err == nil {
			err = w.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
		if err := os.Rename(tmp, corpus); err != nil {
			return "", err
		}
		fmt.Printf("corpus: %d Go files, %.1f MB from %s\n", files, float64(bytes)/1e6, root)
	}
	docs, tok := filepath.Join(o.work, "docs"), filepath.Join(o.work, "tok")
	if err := command(o.estkit, "-q", "ingest", "--format", "jsonl", "--meta-field", "path", "--corpus", "gosrc", "--out", docs, corpus); err != nil {
		return "", err
	}
	if err := command(o.estkit, "-q", "shard", "--tokenizer", "bytes", "--val-fraction", "0.01", "--out", tok, docs); err != nil {
		return "", err
	}
	return tok, command(o.estkit, "inspect", tok)
}
