package main

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestParseSizeUnits: sizes take their units in any case, as people type
// them ("5gb", "500mb", "2GiB", "2gib"); what is not a size is refused.
func TestParseSizeUnits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"5GB", 5e9}, {"5gb", 5e9}, {"500mb", 500e6}, {"500Mb", 500e6}, {"300kb", 300e3}, {"2GiB", 2 << 30}, {"2gib", 2 << 30}, {"7b", 7}, {"1000", 1000}} {
		got, err := parseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "gb", "5xb", "-1gb", "0"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}

// TestTokensOutDash: inspect --tokens --out - writes to standard output, as
// without --out, and leaves no file named "-".
func TestTokensOutDash(t *testing.T) {
	tok, _ := tinyTokenSet(t)
	want, errs, code := run(t, "inspect", tok, "--tokens", "--split", "val", "--format", "nanogpt")
	if code != 0 {
		t.Fatal(errs)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	got, errs, code := run(t, "inspect", tok, "--tokens", "--split", "val", "--format", "nanogpt", "--out", "-")
	if code != 0 || !bytes.Equal([]byte(got), []byte(want)) {
		t.Fatalf("--out -: exit %d, %d bytes on standard output, want %d: %s", code, len(got), len(want), errs)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("--out - left %v", m)
	}
}
