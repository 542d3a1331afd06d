// Package testwait bounds, in tests, a call that must not block or spin:
// the ingest tests' FIFO and /dev/zero inputs and cancelled runs, the
// trainer's named pipe in place of checkpoints/latest. A generous bound,
// not a measurement.
package testwait

import (
	"testing"
	"time"
)

// Within runs f and returns its error, failing t (naming what) if f has
// not returned after limit. f's goroutine is left behind then: the test
// has failed and ends.
func Within(t *testing.T, what string, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s: still running after %v", what, limit)
		return nil
	}
}
