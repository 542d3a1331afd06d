package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeOutRefused: merge refuses an output that is one of its parts
// (the part would be replaced by the whole set) and one inside a training
// run; export --hf refuses a folder inside a run. Nothing is changed.
func TestMergeOutRefused(t *testing.T) {
	dir, samples, _ := sampleDocs(t, "300000")
	p0, p1 := filepath.Join(dir, "p0"), filepath.Join(dir, "p1")
	for i, p := range []string{p0, p1} {
		if _, errs, code := run(t, "-q", "ingest", "--part", []string{"0/2", "1/2"}[i], "--out", p, samples); code != 0 {
			t.Fatal(errs)
		}
	}
	runDir := filepath.Join(dir, "run")
	os.MkdirAll(filepath.Join(runDir, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(runDir, "config.json"), []byte(`{"format": "estkit.run", "version": 1}`+"\n"), 0o644)
	m0, _ := os.ReadFile(filepath.Join(p1, "manifest.json"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"merge", p1, p0, p1}, p1},
		{[]string{"merge", filepath.Join(p1, "."), p0, p1}, p1},
		{[]string{"merge", filepath.Join(runDir, "m"), p0, p1}, runDir},
		{[]string{"export", "--run", runDir, "--hf", filepath.Join(runDir, "hf")}, runDir},
	} {
		_, errs, code := run(t, append([]string{"-q"}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q (want a refusal naming %s)", tc.args, code, errs, tc.want)
		}
	}
	if m1, _ := os.ReadFile(filepath.Join(p1, "manifest.json")); string(m1) != string(m0) {
		t.Error("a refused merge changed its part")
	}
	for _, p := range []string{filepath.Join(runDir, "m"), filepath.Join(runDir, "hf")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}
