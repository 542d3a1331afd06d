package main

import (
	"path/filepath"
	"testing"
)

// TestLibraryCheckedValuesAreUsage: a flag value that a library, not the
// command, finds is not one of its choices or does not parse is a usage
// error (exit 2), as one the command checks itself.
func TestLibraryCheckedValuesAreUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train", "--preset", "bogus", "--data", dir, "--out", filepath.Join(dir, "r1")},
		{"train", "--lr", "abc", "--data", dir, "--out", filepath.Join(dir, "r2")},
		{"train", "--est", "est-bogus", "--data", dir, "--out", filepath.Join(dir, "r3")},
		{"train", "--data", dir + ":0.5x", "--out", filepath.Join(dir, "r4")},
		{"ingest", "--format", "bogus", "--out", filepath.Join(dir, "d"), dir},
	} {
		if _, errs, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (usage): %s", args, code, exitUsage, errs)
		}
	}
}

// TestCommandValuesAreUsage: values the commands parse themselves exit 2
// too: export's --dtype and --max-shard-size, --device, est-trace's --steps.
func TestCommandValuesAreUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"export", "--run", dir, "--hf", filepath.Join(dir, "hf"), "--dtype", "fp8"},
		{"export", "--run", dir, "--hf", filepath.Join(dir, "hf"), "--max-shard-size", "1XB"},
		{"--device", "tpu", "eval", "--run", dir},
		{"est-trace", "--run", dir, "--steps", "abc"},
	} {
		if _, errs, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (usage): %s", args, code, exitUsage, errs)
		}
	}
}
