package shards

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// TestStreamFromBucket: against a real MinIO, the loader streams a token
// set from a bucket through a cache smaller than the set: its batches are
// those of the same set on the local disk, byte for byte, in shuffle and
// sequential order; the cache stays within its bound, evicting files and
// downloading them again when needed; a loader resumed from a saved state
// continues identically; and with the server stopped in the middle of a
// training read, the download is retried until the server is back (the
// test restarts it when it hears the first retry) and the batches are
// still identical.
func TestStreamFromBucket(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "tok", "")
	docs := docSet(t, "go", 5, 192<<10)
	o := Options{ShardTokens: 6000}
	here := build(t, []string{docs}, o)
	o.OutDir = bucket + "sets/a"
	remote := build(t, []string{docs}, o)
	if !slices.Equal(fileSums(remote.Manifest), fileSums(here.Manifest)) {
		t.Fatal("the set in the bucket differs from the local one")
	}
	var total, largest int64
	files := remote.Manifest.Splits[Train].Files
	for _, f := range files {
		total += f.Size
		largest = max(largest, f.Size)
	}
	bound := 2 * largest // one file open, one prefetched
	if len(files) < 4 || bound >= total {
		t.Fatalf("the test needs a set of several files larger than the cache: %d files, %d bytes, bound %d", len(files), total, bound)
	}

	const n = 24
	for _, order := range []string{Shuffle, Sequential} {
		t.Run(order, func(t *testing.T) {
			t.Setenv(store.EnvCache, t.TempDir())
			cfg := Config{B: 4, T: 64, Order: order, Seed: 11}
			want, _ := loaderBatches(t, here.Dir, OpenOptions{}, cfg, nil, n)
			got, set := loaderBatches(t, o.OutDir, OpenOptions{CacheBytes: bound}, cfg, nil, n)
			if got != want {
				t.Fatal("batches streamed from the bucket differ from the local set's")
			}
			c := set.Cache()
			if c.Used() > bound {
				t.Fatalf("the cache holds %d bytes, bound %d", c.Used(), bound)
			}
			if order == Shuffle && c.Downloads() <= len(files) {
				t.Fatalf("%d downloads of %d files: nothing was evicted and fetched again", c.Downloads(), len(files))
			}
			// resume: the second half from the state after the first
			half, state := loaderStateAfter(t, o.OutDir, cfg, n/2)
			rest, _ := loaderBatches(t, o.OutDir, OpenOptions{CacheBytes: bound}, cfg, &state, n-n/2)
			if half+rest != want {
				t.Fatal("a loader resumed from its state gives other batches")
			}
		})
	}

	t.Run("server restart", func(t *testing.T) {
		t.Setenv(store.EnvCache, t.TempDir())
		cfg := Config{B: 4, T: 64, Seed: 3}
		want, _ := loaderBatches(t, here.Dir, OpenOptions{}, cfg, nil, n)
		retried := make(chan string, 1)
		var once sync.Once
		resumed := make(chan struct{})
		opts := OpenOptions{CacheBytes: bound, OnRetry: func(name string, attempt int, err error) {
			once.Do(func() {
				retried <- fmt.Sprintf("%s attempt %d: %v", name, attempt, err)
				<-resumed // the server is back
			})
		}}
		s, err := OpenWith(o.OutDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cfg.Data = []Weighted{{Set: s, Weight: 1}}
		l, err := NewLoader(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var sb strings.Builder
		next := func() error {
			b, err := l.Next()
			if err != nil {
				return err
			}
			fmt.Fprintln(&sb, b.Tokens)
			b.Release()
			return nil
		}
		for range 4 {
			if err := next(); err != nil {
				t.Fatal(err)
			}
		}
		srv.Stop()
		done := make(chan error, 1)
		go func() {
			for range n - 4 {
				if err := next(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case why := <-retried:
			t.Logf("retrying: %s", why)
			srv.Restart(t)
			close(resumed)
		case err := <-done:
			t.Fatalf("the read ended (%v) without a download while the server was down: the test proves nothing", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		if sb.String() != want {
			t.Fatal("batches read across a server restart differ")
		}
	})
}

// TestPrefetchOrder: against a real MinIO, before the loader reads a
// batch it has asked the cache for exactly the files that the next
// Prefetch+4 batches of its deterministic order read (a bound of the
// whole set: the prefetch's half holds them all), and with a small bound
// for the first of them only.
func TestPrefetchOrder(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "tok", "")
	docs := docSet(t, "go", 5, 192<<10)
	url := bucket + "set"
	res := build(t, []string{docs}, Options{ShardTokens: 6000, OutDir: url})
	files := res.Manifest.Splits[Train].Files
	var total, largest int64
	for _, f := range files {
		total += f.Size
		largest = max(largest, f.Size)
	}
	for _, c := range []struct {
		name  string
		bound int64
	}{{"whole set", 2 * total}, {"small", 2 * largest}} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(store.EnvCache, t.TempDir())
			s, err := OpenWith(url, OpenOptions{CacheBytes: c.bound})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cfg := Config{Data: []Weighted{{Set: s, Weight: 1}}, B: 2, T: 32, Seed: 5, Prefetch: 2}
			l, err := NewLoader(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			// the files the next (Prefetch+4)·B sequences read, in order
			st := l.streams[0]
			var need []int
			for k := range int64((cfg.Prefetch + 4) * cfg.B) {
				r, err := l.Sequence(k)
				if err != nil {
					t.Fatal(err)
				}
				st.filesOf(r.Window*int64(cfg.T), int64(cfg.T)+1, func(fi int) {
					if !slices.Contains(need, fi) {
						need = append(need, fi)
					}
				})
			}
			if c.bound < total && len(need) < 2 {
				t.Fatalf("the first batches read %d files: the small bound shows nothing", len(need))
			}
			l.prefetch(l.State())
			s.Cache().Wait()
			var want []int
			var asked int64
			for _, fi := range need {
				if asked > 0 && asked+files[fi].Size > c.bound/2 {
					break
				}
				asked += files[fi].Size
				want = append(want, fi)
			}
			for fi, f := range files {
				if got := s.Cache().Has(f.SHA256); got != slices.Contains(want, fi) {
					t.Errorf("file %d (%s) in the cache: %v; the order needs %v, fitting %v", fi, f.Name, got, need, want)
				}
			}
			if d := s.Cache().Downloads(); d != len(want) {
				t.Fatalf("%d downloads, want %d", d, len(want))
			}
		})
	}
}

// loaderBatches opens the set at dir and returns n batches of a loader of
// cfg (from state), as text, and the set (closed at the test's end).
func loaderBatches(t *testing.T, dir string, o OpenOptions, cfg Config, state *State, n int) (string, *Set) {
	t.Helper()
	s, err := OpenWith(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg.Data = []Weighted{{Set: s, Weight: 1}}
	l, err := NewLoader(cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var sb strings.Builder
	for range n {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&sb, b.Tokens)
		b.Release()
	}
	return sb.String(), s
}

// loaderStateAfter reads n batches of the set at dir and returns them and
// the loader's state after them.
func loaderStateAfter(t *testing.T, dir string, cfg Config, n int) (string, State) {
	t.Helper()
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg.Data = []Weighted{{Set: s, Weight: 1}}
	l, err := NewLoader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var sb strings.Builder
	for range n {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&sb, b.Tokens)
		b.Release()
	}
	return sb.String(), l.State()
}
