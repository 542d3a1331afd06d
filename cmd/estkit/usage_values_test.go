package main

import (
	"os"
	"path/filepath"
	"strings"
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

// TestEmptyPathFlagsRefused: a path flag given as "" (an unset shell
// variable) is a usage error before anything is written: `--out ""` used
// to make the current directory a half-made run.
func TestEmptyPathFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	for _, args := range [][]string{
		{"train", "--preset", "gpt2-tiny", "--data", dir, "--out", ""},
		{"train", "--resume", "--out", ""},
		{"ingest", "--out", "", dir},
		{"eval", "--run", ""},
		{"sample", "--run", ""},
		{"export", "--run", "", "--hf", filepath.Join(dir, "hf")},
		{"export", "--run", dir, "--hf", ""},
		{"est-trace", "--run", ""},
		{"shard", "--cache", "", "--out", filepath.Join(dir, "tok"), filepath.Join(dir, "docs")},
		{"shard", "--out", filepath.Join(dir, "tok"), ""},
		{"ingest", "--out", filepath.Join(dir, "docs"), ""},
		{"inspect", ""},
		{"merge", "", filepath.Join(dir, "p0"), filepath.Join(dir, "p1")},
	} {
		_, errs, code := run(t, args...)
		if code != exitUsage || !strings.Contains(errs, `""`) {
			t.Errorf("%q: exit %d, %q (want exit %d naming the empty value)", args, code, errs, exitUsage)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%q wrote into the current directory: %v", args, entries)
		}
	}
}
