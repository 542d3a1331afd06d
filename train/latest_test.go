package train

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// TestLatestPointerJunk: a checkpoints/latest that names no checkpoint
// (junk bytes, empty, a name that is not a checkpoint's, a checkpoint
// that was never written, a directory in its place) is refused as a
// corrupt checkpoint is: by every reader of the run, naming the file and
// what is wrong with it, and the newest intact checkpoint with the way to
// point latest at it. Nothing is picked in its place and nothing changes.
func TestLatestPointerJunk(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery, cfg.KeepCheckpoints = 4, 2, 0, 2
	cfg.Horizon = 6 // the first 4 steps of tinyRun's 6-step schedule
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	latest := filepath.Join(run, ckptDir, latestName)
	intact := "checkpoint step-00000004 is intact"
	howto := "printf step-00000004 > " + latest
	for _, c := range []struct {
		name  string
		bytes []byte // nil: a directory in latest's place
		want  string
	}{
		{"junk bytes", []byte("\x00\xff\xfeGARBAGE\x01"), "is not a checkpoint's name"},
		{"empty", []byte{}, "is empty"},
		{"a newline alone", []byte("\n"), "is empty"},
		{"a short name", []byte("step-4"), "is not a checkpoint's name"},
		{"a path", []byte("../config.json"), "is not a checkpoint's name"},
		{"a step never written", []byte("step-00000001"), "checkpoint step-00000001 named by " + latest + " is missing"},
		{"a directory", nil, latest},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.RemoveAll(latest); err != nil {
				t.Fatal(err)
			}
			var err error
			if c.bytes == nil {
				err = os.Mkdir(latest, 0o755)
			} else {
				err = os.WriteFile(latest, c.bytes, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			before := tree(t, run)
			_, rerr := ResolveResume(run, nil)
			_, cerr := ReadRunConfig(run)
			_, _, lerr := LoadRun(cpu.New(), run)
			_, err = Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true})
			for _, e := range []struct {
				who string
				err error
			}{{"ResolveResume", rerr}, {"ReadRunConfig", cerr}, {"LoadRun", lerr}, {"Run --resume", err}} {
				if e.err == nil {
					t.Fatalf("%s: no error", e.who)
				}
				if !errors.Is(e.err, ErrCorrupt) {
					t.Errorf("%s: %v is not ErrCorrupt", e.who, e.err)
				}
				for _, w := range []string{latest, c.want, intact, howto} {
					if !strings.Contains(e.err.Error(), w) {
						t.Errorf("%s: %q does not say %q", e.who, e.err, w)
					}
				}
			}
			if after := tree(t, run); !maps.EqualFunc(before, after, bytes.Equal) {
				t.Fatal("the refused readers changed the run directory")
			}
		})
	}
	// the advice followed
	if err := os.RemoveAll(latest); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(latest, []byte("step-00000004"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadRun(cpu.New(), run); err != nil {
		t.Fatalf("latest pointed at step 4 as advised: %v", err)
	}
}
