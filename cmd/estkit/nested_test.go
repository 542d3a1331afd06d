package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetInsideRunRefused: ingest and shard refuse an --out inside a run
// directory (a set there would be a file no run writes, and the run could
// no longer be resumed or overwritten cleanly), naming the run; nothing is
// created.
func TestSetInsideRunRefused(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "300000")
	runDir := filepath.Join(dir, "run")
	os.MkdirAll(filepath.Join(runDir, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(runDir, "config.json"), []byte(`{"format": "estkit.run", "version": 1}`+"\n"), 0o644)
	for _, args := range [][]string{
		{"ingest", "--out", filepath.Join(runDir, "docs"), samples},
		{"shard", "--out", filepath.Join(runDir, "tok"), docs},
		{"shard", "--out", filepath.Join(runDir, "checkpoints", "tok"), docs},
	} {
		_, errs, code := run(t, append([]string{"-q"}, args...)...)
		if code == 0 || !strings.Contains(errs, runDir) || !strings.Contains(errs, "inside") {
			t.Errorf("%v: exit %d, %q (want a refusal naming the run)", args, code, errs)
		}
		if _, err := os.Stat(args[2]); err == nil {
			t.Errorf("%v: created %s", args, args[2])
		}
	}
}
