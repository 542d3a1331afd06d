package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHorizonReport: the horizon study's section states each horizon's
// gaps, the seed spread and the trend, draws its plots, goes into the
// report in place of an earlier one (text around it kept) and survives
// make experiment's rewrite of the report.
func TestHorizonReport(t *testing.T) {
	work := t.TempDir()
	hs, err := parseHorizons("0.08192,0.32768,1.31072", 1)
	if err != nil {
		t.Fatal(err)
	}
	// equal-FLOPs gap 0.10, 0.05, 0.00: shrinking by 0.05 per ×4
	vals := map[string][]float64{"full-s1": {3, 2.5, 2}, "est-s1": {3.2, 2.65, 2.1}, "full-eqflops": {3.1, 2.6, 2.1}, "est-sampled": {3.15, 2.6, 2.05}, "full-s2": {0, 0, 2.02}, "est-s2": {0, 0, 2.14}, "est-width": {0, 0, 2.12}}
	for _, r := range horizonRuns(work, hs) {
		i := 0
		for hs[i].label != r.h.label {
			i++
		}
		frac, steps := 0.75, r.h.steps
		if strings.HasPrefix(r.Name, "full") {
			frac = 1
		}
		if r.EqualFLOPs {
			steps = steps * 3 / 4
		}
		fakeRun(t, r.dir, steps, frac, vals[r.Name][i], strings.HasPrefix(r.Name, "est"))
	}
	report := filepath.Join(work, "docs", "EXPERIMENTS.md")
	os.MkdirAll(filepath.Dir(report), 0o755)
	os.WriteFile(report, []byte("# before\n\n"+horizonBegin+"\nold section\n"+horizonEnd+"\n\n## after\n"), 0o644)
	o := options{work: work, report: report, plots: filepath.Join(work, "docs", "experiments"), horizons: "0.08192,0.32768,1.31072", scale: 1, reportOnly: true}
	if err := runHorizon(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(report)
	r := string(b)
	for _, want := range []string{
		"# before\n", "\n## after\n", "| 1.31072M | 1.31M | 0.20 | 640 |", "+0.1000 | +0.0000 |",
		"the equal-steps gap is +0.1000 with seed 1 and +0.1200 with seed 2", "±0.0200",
		"it shrinks by 0.1000, beyond the seed spread", "by -0.0500 per ×4 of tokens", "lower by 0.0500, beyond the seed spread", "already level with or better than full training for its FLOPs", "reaches 2.1200 against est-s1's 2.1000: a difference of +0.0200, within the seed spread",
		"![EST's final validation loss", "horizon-val-1.31072M.png",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(r, "old section") || strings.Count(r, horizonBegin) != 1 {
		t.Errorf("the earlier section was not replaced")
	}
	for _, f := range []string{"horizon-gap.png", "horizon-val-0.08192M.png", "horizon-val-0.32768M.png", "horizon-val-1.31072M.png"} {
		if st, err := os.Stat(filepath.Join(o.plots, f)); err != nil || st.Size() < 10000 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
	if t.Failed() {
		t.Log(r)
	}
	if kept := keptSection(report); !strings.HasPrefix(kept, horizonBegin) || !strings.HasSuffix(kept, horizonEnd+"\n") {
		t.Errorf("keptSection: %q", kept)
	}
}

func TestParseHorizons(t *testing.T) {
	for _, bad := range []string{"", "0", "-1", "x", "1,,2", "NaN", "Inf", "0.5,0.5"} {
		if _, err := parseHorizons(bad, 1); err == nil {
			t.Errorf("-horizons %q accepted", bad)
		}
	}
	hs, err := parseHorizons("8, 0.5,2", 1)
	if err != nil || len(hs) != 3 || hs[0].label != "0.5M" || hs[2].steps != 3906 {
		t.Fatalf("%v %v", hs, err)
	}
}

// TestHorizonRunReuse: a run whose record matches its configuration is
// reused when complete and resumed (--resume) when not; a run of another
// configuration is replaced by a fresh one.
func TestHorizonRunReuse(t *testing.T) {
	work := t.TempDir()
	log := filepath.Join(work, "calls")
	bin := filepath.Join(work, "fake-estkit")
	os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n"), 0o755)
	hs, _ := parseHorizons("0.08192", 1)
	r := horizonRuns(work, hs)[0] // full-s1
	o := options{estkit: bin, work: work}
	calls := func() string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return string(b)
	}
	// fresh: trained, its record written
	if err := trainHorizonRun(o, r, 0, 1, "model.json", "tok"); err != nil {
		t.Fatal(err)
	}
	if c := calls(); !strings.Contains(c, "train --config model.json --data tok --out "+r.dir) || strings.Contains(c, "--resume") {
		t.Fatalf("a new run: %q", c)
	}
	// complete, same configuration: reused
	fakeRun(t, r.dir, r.h.steps, 1, 2, false)
	if err := trainHorizonRun(o, r, 0, 1, "model.json", "tok"); err != nil {
		t.Fatal(err)
	}
	if c := calls(); c != "" {
		t.Fatalf("a finished run was trained again: %q", c)
	}
	// interrupted, same configuration: resumed
	os.Truncate(filepath.Join(r.dir, "metrics.jsonl"), 10)
	if err := trainHorizonRun(o, r, 0, 1, "model.json", "tok"); err != nil {
		t.Fatal(err)
	}
	if c := calls(); !strings.Contains(c, "--resume") {
		t.Fatalf("an interrupted run was not resumed: %q", c)
	}
	// another configuration (here the data): a fresh run replaces it
	fakeRun(t, r.dir, r.h.steps, 1, 2, false)
	if err := trainHorizonRun(o, r, 0, 1, "model.json", "tok2"); err != nil {
		t.Fatal(err)
	}
	if c := calls(); !strings.Contains(c, "--data tok2") || strings.Contains(c, "--resume") {
		t.Fatalf("a run of another configuration: %q", c)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "metrics.jsonl")); err == nil {
		t.Fatal("the run of the other configuration was not removed first")
	}
}
