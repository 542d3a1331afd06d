package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestReduceDTypeValues: --reduce-dtype takes fp32 or bf16, and bf16 only
// with --device cuda (the CPU's ranks reduce over MPI in fp32); anything
// else is a usage error naming the flag, before any run starts.
func TestReduceDTypeValues(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train", "--reduce-dtype", "fp16", "--data", dir, "--out", filepath.Join(dir, "r1")},
		{"train", "--reduce-dtype", "bf16", "--data", dir, "--out", filepath.Join(dir, "r2")},
	} {
		_, errs, code := run(t, args...)
		if code != exitUsage || !strings.Contains(errs, "--reduce-dtype") {
			t.Errorf("%v: exit %d, want %d (usage) naming --reduce-dtype: %s", args, code, exitUsage, errs)
		}
	}
}
