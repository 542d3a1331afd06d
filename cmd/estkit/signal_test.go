package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/estkit/estkit/train"
)

// firstWrite signals once the command has written something: by then
// execute has installed its signal handler, so a SIGINT sent to this
// process reaches the command instead of ending the test binary.
type firstWrite struct {
	once    sync.Once
	started chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	return len(p), nil
}

// estTraceRun writes a run directory holding only the config.json that
// est-trace reads.
func estTraceRun(t *testing.T) string {
	t.Helper()
	s := train.ESTPresets["est-gpt2"]
	cfg := train.Recipe(train.Presets["gpt2-tiny"])
	s = s.Scaled(1 << 24)
	cfg.Preset, cfg.Steps, cfg.Batch, cfg.Seq, cfg.EST, cfg.Schedule = "gpt2-tiny", 1<<24, 1, 8, "est-gpt2", &s
	cfg.Data = []train.Data{{Dir: t.TempDir(), Weight: 1}} // est-trace reads no data, but a run's config names some
	cfg.Defaults()
	b, err := json.Marshal(train.ConfigFile{Format: "estkit.run", Version: 1, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestESTTraceSIGINT: the first SIGINT stops est-trace over a huge step
// range (exit 130, "interrupted"); it used to print on until a second one.
func TestESTTraceSIGINT(t *testing.T) {
	errw := &bytes.Buffer{}
	run := estTraceRun(t)
	out := &firstWrite{started: make(chan struct{})}
	done := make(chan int, 1)
	go func() {
		done <- execute([]string{"est-trace", "--run", run, "--steps", "0:1000000000000"}, out, errw)
	}()
	select {
	case <-out.started:
	case code := <-done:
		t.Fatalf("est-trace ended at once with status %d: %s", code, errw)
	case <-time.After(60 * time.Second):
		t.Fatal("est-trace printed nothing")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 130 {
			t.Fatalf("exit status %d after SIGINT, want 130", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("est-trace still running 20 s after SIGINT")
	}
}
