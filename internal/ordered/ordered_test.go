package ordered

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// run squares numbers: stream i holds i*100 … i*100+n-1.
func run(ctx context.Context, streams, n int, sink func(int, int) error, drop func(int)) error {
	return Run(ctx, Config[int, int]{
		Streams: streams, Readers: 2, Workers: 3, Depth: 4, Queue: 2,
		Read: func(ctx context.Context, i int, emit func(int) error) error {
			for k := range n {
				if err := emit(i*100 + k); err != nil {
					return err
				}
			}
			return nil
		},
		Work: func(_ context.Context, _ int, x int) int { return x * x },
		Sink: sink,
		Drop: drop,
	})
}

// TestOrder: the sink sees every result once, in stream order, whatever
// the scheduling.
func TestOrder(t *testing.T) {
	for it := range 50 {
		var got []int
		err := run(context.Background(), 5, 37, func(i, r int) error {
			got = append(got, r)
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for i := range 5 {
			for j := range 37 {
				if x := i*100 + j; got[k] != x*x {
					t.Fatalf("run %d: result %d is %d, want %d", it, k, got[k], x*x)
				}
				k++
			}
		}
		if k != len(got) {
			t.Fatalf("%d results, want %d", len(got), k)
		}
	}
}

// noLeak fails the test when goroutines started since before are still
// running shortly after (they are ending, not blocked: Run waited for
// every goroutine it started, so only the runtime's own may linger).
func noLeak(t *testing.T, before int) {
	t.Helper()
	for wait := 0; runtime.NumGoroutine() > before; wait++ {
		if wait == 200 {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Run, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFailuresEndEverything: a sink error, a reader error, a cancelled
// context and a reader that emits forever each end the run with the right
// error, every goroutine gone and every result the sink did not take
// dropped exactly once. A hang fails the test (the run is bounded by a
// watchdog, not timed).
func TestFailuresEndEverything(t *testing.T) {
	errSink, errRead := errors.New("sink failed"), errors.New("read failed")
	cases := []struct {
		name string
		want error
		cfg  func(ctx context.Context, cancel func(), worked, sunk, dropped *atomic.Int64) Config[int, int]
	}{
		{"sink error", errSink, func(ctx context.Context, cancel func(), worked, sunk, dropped *atomic.Int64) Config[int, int] {
			c := endless(worked, sunk, dropped)
			c.Sink = func(i, r int) error {
				if sunk.Add(1) == 10 {
					return errSink
				}
				return nil
			}
			return c
		}},
		{"reader error", errRead, func(ctx context.Context, cancel func(), worked, sunk, dropped *atomic.Int64) Config[int, int] {
			c := endless(worked, sunk, dropped)
			c.Read = func(ctx context.Context, i int, emit func(int) error) error {
				if i == 1 {
					return errRead
				}
				for {
					if err := emit(i); err != nil {
						return err
					}
				}
			}
			return c
		}},
		{"cancelled", context.Canceled, func(ctx context.Context, cancel func(), worked, sunk, dropped *atomic.Int64) Config[int, int] {
			c := endless(worked, sunk, dropped)
			c.Sink = func(i, r int) error {
				if sunk.Add(1) == 25 {
					cancel()
				}
				return nil
			}
			return c
		}},
		{"cancelled while readers wait", context.Canceled, func(ctx context.Context, cancel func(), worked, sunk, dropped *atomic.Int64) Config[int, int] {
			c := endless(worked, sunk, dropped)
			c.Readers = 1 // the other 99 streams wait for a reader slot
			c.Work = func(ctx context.Context, _ int, x int) int {
				if worked.Add(1) == 7 {
					cancel()
				}
				return x
			}
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			var worked, sunk, dropped atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Run(ctx, tc.cfg(ctx, cancel, &worked, &sunk, &dropped)) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second): // a watchdog, far beyond any run: a hang, not a slow run
				buf := make([]byte, 1<<20)
				t.Fatalf("Run hangs:\n%s", buf[:runtime.Stack(buf, true)])
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			noLeak(t, before)
			// every result a worker produced was sunk or dropped
			sinkTook := sunk.Load()
			if tc.name == "sink error" {
				sinkTook-- // the one whose sink failed is dropped too
			}
			if w, s, d := worked.Load(), sinkTook, dropped.Load(); w != s+d {
				t.Fatalf("%d worked, %d sunk, %d dropped", w, s, d)
			}
		})
	}
}

// endless: 100 streams that each emit without end.
func endless(worked, sunk, dropped *atomic.Int64) Config[int, int] {
	return Config[int, int]{
		Streams: 100, Readers: 3, Workers: 2, Depth: 2, Queue: 1,
		Read: func(ctx context.Context, i int, emit func(int) error) error {
			for k := 0; ; k++ {
				if err := emit(k); err != nil {
					return err
				}
			}
		},
		Work: func(_ context.Context, _ int, x int) int { worked.Add(1); return x },
		Sink: func(int, int) error { sunk.Add(1); return nil },
		Drop: func(int) { dropped.Add(1) },
	}
}

func Example() {
	var out []string
	err := Run(context.Background(), Config[string, string]{
		Streams: 2, Workers: 4,
		Read: func(_ context.Context, i int, emit func(string) error) error {
			for _, w := range [][]string{{"a", "b"}, {"c"}}[i] {
				if err := emit(w); err != nil {
					return err
				}
			}
			return nil
		},
		Work: func(_ context.Context, _ int, s string) string { return s + s },
		Sink: func(_ int, s string) error { out = append(out, s); return nil },
	})
	fmt.Println(out, err)
	// Output: [aa bb cc] <nil>
}
