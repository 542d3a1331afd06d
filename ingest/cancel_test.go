package ingest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/estkit/estkit/internal/testwait"
)

// zeros is an endless input without a newline: a .jsonl that is one line
// that never ends.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReadJSONLCancel: a reader inside one endless line stops with
// context.Canceled once the run is cancelled; it used to check only between
// lines and ran on until a second signal.
func TestReadJSONLCancel(t *testing.T) {
	o := &Options{OutDir: "unused"}
	if err := o.resolve(); err != nil {
		t.Fatal(err)
	}
	in := &Input{Path: "z.jsonl", Rel: "z.jsonl", Format: FormatJSONL}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	err := testwait.Within(t, "cancelled read", 20*time.Second, func() error {
		return readJSONL(ctx, in, zeros{}, -1, o, func(unit) error { return nil })
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestRunCancelled: a cancelled run returns context.Canceled itself, not a
// data error made of it, so the command says "interrupted".
func TestRunCancelled(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "in", "a.jsonl"), []byte("{\"text\": \"x\"}\n"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, []string{filepath.Join(dir, "in")}, Options{OutDir: filepath.Join(dir, "out"), OnError: OnErrorSkip})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
