package main

import (
	"strings"
	"testing"
)

// TestFloatFlagUnderflowCLI: the commands' own float flags refuse a
// nonzero number that rounds to 0 in float64 (sample --temperature
// 1e-400 would sample greedily, shard --val-fraction 1e-400 make no val
// split), naming the flag, as train's flags do; a zero stays a zero.
func TestFloatFlagUnderflowCLI(t *testing.T) {
	missing := t.TempDir() + "/none"
	for _, c := range []struct {
		flag string
		args []string
	}{
		{"temperature", []string{"sample", "--run", missing, "--prompt", "a", "--temperature"}},
		{"val-fraction", []string{"shard", "--out", missing + "-out", missing, "--val-fraction"}},
	} {
		for _, v := range []string{"1e-400", "-1e-400", "0x1p-2000"} {
			_, errs, code := run(t, append(c.args, v)...)
			if code == 0 || !strings.Contains(errs, "--"+c.flag) || !strings.Contains(errs, "underflows") {
				t.Errorf("--%s %s: %d %s (want it refused as underflowing, by name)", c.flag, v, code, errs)
			}
		}
		for _, v := range []string{"0", "-0", "0.0e-999"} {
			// refused for the missing input, not for the value
			if _, errs, _ := run(t, append(c.args, v)...); strings.Contains(errs, "--"+c.flag) {
				t.Errorf("--%s %s: %s", c.flag, v, errs)
			}
		}
	}
}
