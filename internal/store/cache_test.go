package store

import (
	"strings"
	"testing"
)

// TestCacheBytes: sizes with and without suffixes; a bad value of
// ESTKIT_S3_CACHE_BYTES is an error naming it.
func TestCacheBytes(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "512M": 512 << 20, "8G": 8 << 30, "8GiB": 8 << 30, "2t": 2 << 40, "100k": 100 << 10, "3MB": 3 << 20} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-5", "G", "1.5G", "12X", "9999999999T"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	t.Setenv(EnvCacheBytes, "")
	if n, err := CacheBytes(); err != nil || n != DefaultCacheBytes {
		t.Fatalf("unset: %d, %v", n, err)
	}
	t.Setenv(EnvCacheBytes, "lots")
	if _, err := CacheBytes(); err == nil || !strings.Contains(err.Error(), EnvCacheBytes) {
		t.Fatalf("a bad value: %v", err)
	}
}
