package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"

	"github.com/estkit/estkit/train"
	"github.com/spf13/pflag"
)

// Checks of numeric flag values, shared by the commands: each returns a
// usage error naming the flag, so that a value a command cannot mean
// (NaN, ±Inf, a negative count, a zero size) is refused before any work
// instead of being read as a default or running with it.

// checkPositive refuses v < 1 for a count or size flag where 0 means
// nothing.
func checkPositive(cmd, flag string, v int64) error {
	if v < 1 {
		return usageErrorf("%s: --%s %d: want a positive number", cmd, flag, v)
	}
	return nil
}

// checkWorkers refuses a negative --workers (0 is one per CPU).
func checkWorkers(cmd string, v int) error {
	if v < 0 {
		return usageErrorf("%s: --workers %d: want a positive number of workers (0: one per CPU)", cmd, v)
	}
	return nil
}

// checkOutLink refuses an --out that is a symlink to nothing, which
// creating the directory would report as "file exists", and one inside a
// training run's directory.
func checkOutLink(cmd, out string) error {
	if out == "" { // shard's set under --cache
		return nil
	}
	// a set inside a run directory would be a file no run writes there
	if run, ok := train.EnclosingRun(out); ok {
		return fmt.Errorf("%s: --out %s is inside the training run %s: give a directory outside it", cmd, out, run)
	}
	st, err := os.Lstat(out)
	if err != nil || st.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if _, err := os.Stat(out); errors.Is(err, fs.ErrNotExist) {
		target, _ := os.Readlink(out)
		return fmt.Errorf("%s: --out %s is a dangling symlink (to %s, which does not exist): create its target or give another directory", cmd, out, target)
	}
	return nil
}

// floatValue is a float64 flag read as train reads its own
// (train.ParseFloat): a nonzero number that rounds to 0 is refused, not
// taken for 0 (pflag's Float64 takes 1e-400 for 0).
type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	x, err := train.ParseFloat(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (floatValue) Type() string { return "float64" }

// floatFlag defines a float64 flag, p set to def, read by floatValue.
func floatFlag(f *pflag.FlagSet, p *float64, name string, def float64, usage string) {
	*p = def
	f.Var(floatValue{p}, name, usage)
}

// checkSampleFlags checks sample's --tokens, --temperature and --top-k.
func checkSampleFlags(tokens int, temperature float64, topK int) error {
	if err := checkPositive("sample", "tokens", int64(tokens)); err != nil {
		return err
	}
	// NaN compares false with everything: checked by what it must be
	if !(temperature >= 0) || math.IsInf(temperature, 0) {
		return usageErrorf("sample: --temperature %g: want a finite number, 0 (greedy) or more", temperature)
	}
	if topK < 0 {
		return usageErrorf("sample: --top-k %d: want 0 (all) or a positive number", topK)
	}
	return nil
}
