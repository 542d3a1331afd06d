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
	cfg, run := checkpointedRun(t, 4, 2, 2)
	latest := filepath.Join(run, ckptDir, latestName)
	intact := "checkpoint step-00000004 is intact"
	howto := "printf step-00000004 > " + latest
	for _, c := range []struct {
		name  string
		bytes []byte                    // nil: make makes latest
		make  func(latest string) error // what stands in latest's place
		want  string
	}{
		{"junk bytes", []byte("\x00\xff\xfeGARBAGE\x01"), nil, "is not a checkpoint's name"},
		{"empty", []byte{}, nil, "is empty"},
		{"a newline alone", []byte("\n"), nil, "is empty"},
		{"a short name", []byte("step-4"), nil, "is not a checkpoint's name"},
		{"a path", []byte("../config.json"), nil, "is not a checkpoint's name"},
		{"a step never written", []byte("step-00000001"), nil, "checkpoint step-00000001 named by " + latest + " is missing"},
		{"a directory", nil, func(l string) error { return os.Mkdir(l, 0o755) }, "it is a directory"},
		{"a link to a directory", nil, func(l string) error { return os.Symlink("step-00000004", l) }, "a symbolic link to step-00000004, which is no file"},
		{"a link to nothing", nil, func(l string) error { return os.Symlink("step-00000009", l) }, "a symbolic link to step-00000009, which is no file"},
		{"a link to itself", nil, func(l string) error { return os.Symlink(latestName, l) }, "a symbolic link to latest, which is no file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.RemoveAll(latest); err != nil {
				t.Fatal(err)
			}
			var err error
			if c.bytes == nil {
				err = c.make(latest)
			} else {
				err = os.WriteFile(latest, c.bytes, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			want := []string{latest, c.want, intact, howto}
			if c.bytes == nil { // printf's > would fail on it or write where it points: it goes first
				want = append(want, "remove "+latest+", which is not a file (rm -r "+latest+"), then point latest")
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
				says(t, e.who, e.err, want...)
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

// TestJunkLatestCorruptNewer: step-2 corrupt, step-1 intact. With
// latest naming step 2 or with junk in latest, the advice names step 1
// and says to move step-00000002 out before resuming from it (a resume
// from step 1 writes step 2 again).
func TestJunkLatestCorruptNewer(t *testing.T) {
	_, run := checkpointedRun(t, 2, 1, 3) // step-00000001 and step-00000002, latest naming the second
	latest := filepath.Join(run, ckptDir, latestName)
	model := filepath.Join(run, ckptDir, "step-00000002", "model.safetensors")
	f, err := os.OpenFile(model, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("X")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	move := "move step-00000002 out of"
	_, _, err = LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), "step-00000001 is intact") || !strings.Contains(err.Error(), move) {
		t.Fatalf("latest naming the corrupt step 2: %v (want step 1 intact and %q)", err, move)
	}
	if err := os.WriteFile(latest, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), "step-00000001 is intact") {
		t.Fatalf("junk latest: %v (want step 1 intact)", err)
	}
	if !strings.Contains(err.Error(), move) {
		t.Errorf("junk latest with a corrupt step 2: %q does not say %q, as it does when latest names step 2", err, move)
	}
}
