//go:build cuda || cudaemu

package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// hub is a test double for NCCL: the ranks' fakeRanks hand it their
// buffers, downloaded; once every rank has, it averages them (in float64,
// in rank order) and hands the means back to be uploaded.
type hub struct {
	ranks int
	in    chan contribution
}

type contribution struct {
	rank int
	data [][]float32
	back chan [][]float32
}

func newHub(ranks int) *hub {
	h := &hub{ranks: ranks, in: make(chan contribution)}
	go h.run()
	return h
}

func (h *hub) run() {
	for {
		got := make([]contribution, h.ranks)
		for range h.ranks {
			c, ok := <-h.in
			if !ok {
				return
			}
			got[c.rank] = c
		}
		mean := make([][]float32, len(got[0].data))
		for i := range mean {
			mean[i] = make([]float32, len(got[0].data[i]))
			for j := range mean[i] {
				var s float64
				for _, c := range got {
					s += float64(c.data[i][j])
				}
				mean[i][j] = float32(s / float64(h.ranks))
			}
		}
		for _, c := range got {
			c.back <- mean
		}
	}
}

// fakeRank is one rank's collective over a hub; fail makes its
// all-reduce return an error instead.
type fakeRank struct {
	hub                *hub
	ops                *Ops
	rank               int
	fail               error
	aborted, destroyed bool
	calls              int
}

func (f *fakeRank) allReduceAvg(bufs []Buf) error {
	f.calls++
	if f.fail != nil {
		return f.fail
	}
	data := make([][]float32, len(bufs))
	for i, b := range bufs {
		data[i] = make([]float32, b.n)
		f.ops.Download(data[i], b)
	}
	back := make(chan [][]float32)
	f.hub.in <- contribution{rank: f.rank, data: data, back: back}
	mean := <-back
	for i, b := range bufs {
		f.ops.Upload(b, mean[i])
	}
	return f.ops.Err()
}

func (f *fakeRank) abort()         { f.aborted = true }
func (f *fakeRank) destroy() error { f.destroyed = true; return nil }

// oneLaunch runs one kernel at a time on a device shared by goroutines
// that stand for ranks: the emulator's launches share its fibers' state.
type oneLaunch struct {
	device
	mu *sync.Mutex
}

func (d oneLaunch) launch(kernel string, grid, block [3]int, args []uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.device.launch(kernel, grid, block, args)
}

// TestReducerAverages runs three ranks' Reducers over the hub, on
// gradient views with a gap between two of them (a skipped block's
// gradients, which no rank reduces): each view must hold the mean of the
// ranks' values, in fp32 exactly as the hub computes it, in bf16 within
// bfloat16's rounding of the inputs and of the mean; the gap keeps its
// values. A reducer that packs or unpacks at the wrong offsets, skips a
// view or leaves the sum unscaled fails; so does one that joins views
// that are not adjacent (the last two are, the first two not).
func TestReducerAverages(t *testing.T) {
	const R, N = 3, 100
	spans := [][2]int{{0, 10}, {20, 57}, {57, 100}} // values 10..20 are a skipped block's
	for _, bf := range []bool{false, true} {
		t.Run(fmt.Sprintf("bf16=%v", bf), func(t *testing.T) {
			h := newHub(R)
			defer close(h.in)
			host := make([][]float32, R)
			got := make([][]float32, R)
			errs := make([]error, R)
			var wg sync.WaitGroup
			var launches sync.Mutex
			for r := range R {
				rng := rand.New(rand.NewPCG(uint64(r), 7))
				host[r] = make([]float32, N)
				for i := range host[r] {
					host[r][i] = float32(rng.NormFloat64()) * float32(r+1)
				}
				dev, err := New()
				if err != nil {
					t.Fatal(err)
				}
				o := newOps(oneLaunch{dev.dev, &launches})
				g := o.Alloc(N)
				o.Upload(g, host[r])
				views := make([]kernels.Buf, len(spans))
				for i, s := range spans {
					views[i] = o.Slice(g, s[0], s[1]-s[0])
				}
				red := newReducer(o, &fakeRank{hub: h, ops: o, rank: r}, r, R, bf)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for step := range 2 { // a second step reuses the packed buffer
						if errs[r] = red.Reduce(o, views); errs[r] != nil {
							return
						}
						if step == 0 {
							o.Upload(g, host[r])
						}
					}
					got[r] = make([]float32, N)
					o.Download(got[r], g)
				}()
			}
			wg.Wait()
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			round := func(v float32) float32 {
				if bf {
					return kernels.FromBF16(kernels.ToBF16(v))
				}
				return v
			}
			for r := range R {
				for i := range N {
					want := host[r][i]
					if i < 10 || i >= 20 {
						var s float64
						for q := range R {
							s += float64(round(host[q][i]))
						}
						want = round(float32(s / R))
					}
					if got[r][i] != want {
						t.Fatalf("rank %d, value %d: %g, want %g", r, i, got[r][i], want)
					}
				}
			}
		})
	}
}

// TestReducerFailureAborts: an all-reduce that fails makes Reduce's error
// name the rank and the collective's error, and aborts the collective so
// that no other rank waits for this one; Close after a failure aborts,
// after success destroys.
func TestReducerFailureAborts(t *testing.T) {
	o, err := New()
	if err != nil {
		t.Fatal(err)
	}
	g := o.Alloc(8)
	for _, bf := range []bool{false, true} {
		f := &fakeRank{ops: o, rank: 1, fail: errors.New("ncclAllReduce: remote process exited or there was a network error (ncclResult 6)")}
		err := newReducer(o, f, 1, 2, bf).Reduce(o, []kernels.Buf{g})
		if err == nil || !strings.Contains(err.Error(), "rank 1 of 2") || !strings.Contains(err.Error(), "remote process exited") || !f.aborted {
			t.Errorf("bf16=%v: Reduce = %v, aborted %v; want the rank, NCCL's error, and an abort", bf, err, f.aborted)
		}
	}
	f := &fakeRank{ops: o}
	if err := newReducer(o, f, 0, 2, false).Close(true); err != nil || !f.aborted || f.destroyed {
		t.Errorf("Close(failed) = %v, aborted %v, destroyed %v; want an abort", err, f.aborted, f.destroyed)
	}
	f = &fakeRank{ops: o}
	if err := newReducer(o, f, 0, 2, false).Close(false); err != nil || f.aborted || !f.destroyed {
		t.Errorf("Close = %v, aborted %v, destroyed %v; want a destroy", err, f.aborted, f.destroyed)
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f = &fakeRank{ops: o}
	if err := newReducer(o, f, 0, 2, false).Reduce(other, []kernels.Buf{other.Alloc(4)}); err == nil || f.calls != 0 {
		t.Errorf("Reduce on another backend = %v after %d all-reduces; want an error before any", err, f.calls)
	}
}

// oneRank is a job of one process: its broadcast has nothing to do.
type oneRank struct{}

func (oneRank) Rank() int                       { return 0 }
func (oneRank) Size() int                       { return 1 }
func (oneRank) Bcast(x []int64, root int) error { return nil }

// TestNCCLMissingLibrary: NCCL where no library is at the path given is
// an error naming the path and ErrNCCL, from NewReducer as from a run,
// not a crash.
func TestNCCLMissingLibrary(t *testing.T) {
	missing := t.TempDir() + "/libnccl.so.2"
	t.Setenv(ncclEnv, missing)
	o, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewReducer(o, oneRank{}, false)
	if !errors.Is(err, ErrNCCL) || !strings.Contains(err.Error(), "cannot load NCCL ("+missing+")") || !strings.Contains(err.Error(), "rank 0 of 1") {
		t.Fatalf("NewReducer = %v; want ErrNCCL naming %s and the rank", err, missing)
	}
}

// TestNCCLOneRank reduces on a communicator of one rank, the NCCL path of
// `mpirun -np 1` (make device-check runs it on the first card): in fp32
// the mean of one rank is its values exactly, in bf16 their rounding.
// Without a libnccl it skips, unless ESTKIT_REQUIRE_NCCL is set; on the
// emulator NewReducer must refuse with ErrEmulated once NCCL loads.
func TestNCCLOneRank(t *testing.T) {
	o, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, bf := range []bool{false, true} {
		red, err := NewReducer(o, oneRank{}, bf)
		if errors.Is(err, ErrNCCL) && os.Getenv("ESTKIT_REQUIRE_NCCL") == "" {
			t.Skipf("no NCCL here: %v", err)
		}
		if emulated {
			if !errors.Is(err, ErrEmulated) {
				t.Fatalf("NewReducer on the emulator = %v; want its refusal", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		host := make([]float32, 1000)
		for i := range host {
			host[i] = float32(i)*0.37 - 101.5
		}
		g := o.Alloc(len(host))
		o.Upload(g, host)
		if err := red.Reduce(o, []kernels.Buf{o.Slice(g, 0, 300), o.Slice(g, 300, 700)}); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(host))
		o.Download(got, g)
		if err := o.Sync(); err != nil {
			t.Fatal(err)
		}
		for i, v := range host {
			want := v
			if bf {
				want = kernels.FromBF16(kernels.ToBF16(v))
			}
			if got[i] != want && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
				t.Fatalf("bf16=%v, value %d: %g, want %g", bf, i, got[i], want)
			}
		}
		if err := red.Close(false); err != nil {
			t.Fatal(err)
		}
	}
}
