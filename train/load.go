package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

// LoadRun reads a run's configuration and its latest checkpoint's
// parameters, after checking config.json (estkit's, and the one the
// checkpoint was written under) and every file of the checkpoint against
// the hashes its manifest records (ErrCorrupt, naming the file).
//
// A run training beside it may prune the checkpoint LoadRun is reading:
// when reading fails and checkpoints/latest no longer names that
// checkpoint, LoadRun reads the new latest, up to loadRetries times.
func LoadRun(ops kernels.Ops, run string) (Model, *Config, error) {
	var prev string
	for range loadRetries {
		m, cfg, dir, err := loadRun(ops, run)
		if err == nil {
			return m, cfg, nil
		}
		if dir == "" {
			return nil, nil, err
		}
		now, lerr := latestCheckpoint(run)
		if lerr != nil || now == dir { // not pruned under it: the error is the checkpoint's
			return nil, nil, err
		}
		prev = dir
	}
	return nil, nil, fmt.Errorf("train: %s: the latest checkpoint changed %d times while it was read (last %s): a run is writing checkpoints faster than they can be read; try again, or raise its --checkpoint-every", run, loadRetries, filepath.Base(prev))
}

// loadRetries bounds LoadRun's rereads of a run whose checkpoints move on.
const loadRetries = 8

// loadRunHook, when set (by tests), runs once LoadRun has checked a
// checkpoint and before it reads the tensors, so that a test can prune it
// there as a concurrent run would.
var loadRunHook func(dir string)

// loadRun reads run's latest checkpoint; dir is the checkpoint it read
// (empty when the failure came before one was named).
func loadRun(ops kernels.Ops, run string) (_ Model, _ *Config, dir string, _ error) {
	dir, err := latestCheckpoint(run)
	if err != nil {
		return nil, nil, "", err
	}
	c, err := openCheckpoint(run)
	if err != nil {
		return nil, nil, dir, err
	}
	if loadRunHook != nil {
		loadRunHook(c.dir)
	}
	m, err := NewModel(ops, c.cfg.Model, nil)
	if err != nil {
		return nil, nil, "", err
	}
	if err := m.LoadTensors(c.dir, false); err != nil {
		return nil, nil, c.dir, err
	}
	return m, c.cfg, "", nil
}

// Eval is the model's mean loss over up to batches batches of a split
// (train or val) of the run's first data set (the windows evaluations
// during training read), and the number of batches it averaged: fewer
// than asked when the split holds fewer.
func Eval(m Model, cfg *Config, split string, batches int) (float64, int, error) {
	if split != shards.Train && split != shards.Val {
		return 0, 0, fmt.Errorf("train: %w: split %q (want %s or %s)", ErrConfig, split, shards.Train, shards.Val)
	}
	if batches <= 0 {
		return 0, 0, fmt.Errorf("train: %w: batches %d: want 1 or more", ErrConfig, batches)
	}
	if len(cfg.Data) == 0 {
		return 0, 0, fmt.Errorf("train: %w: the run's configuration names no data", ErrConfig)
	}
	s, err := OpenData(cfg, 0)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	c := *cfg
	c.EvalBatches = batches
	data := []shards.Weighted{{Set: s, Weight: 1}}
	return evalBatches(m, data, &c, split)
}

// Generate continues prompt by n tokens, sampling from the softmax at
// temperature (0: greedy) among the topK most likely (0: all). ctx is
// checked before every token, so that a Ctrl-C stops a long generation.
func Generate(ctx context.Context, m Model, prompt []int32, n int, temperature float64, topK int, seed uint64) ([]int32, error) {
	return GenerateEach(ctx, m, prompt, n, temperature, topK, seed, nil)
}

// GenerateEach is Generate calling each, when not nil, with the sequence
// so far after every token it adds (a caller prints as it goes); an error
// from each stops it. On an error or cancellation it returns the tokens
// made so far with the error.
func GenerateEach(ctx context.Context, m Model, prompt []int32, n int, temperature float64, topK int, seed uint64, each func([]int32) error) ([]int32, error) {
	c, o := m.Config(), m.Ops()
	if len(prompt) == 0 {
		return nil, fmt.Errorf("train: empty prompt")
	}
	rng := rand.New(rand.NewPCG(seed, 0x73616d70))
	out := append([]int32(nil), prompt...)
	V, Vp := c.Vocab, c.Padded
	row := make([]float32, Vp)
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		window := out
		if len(window) > c.MaxT {
			window = window[len(window)-c.MaxT:]
		}
		T := len(window)
		if _, err := m.Forward(window, nil, 1, T, nil); err != nil {
			return out, err
		}
		o.Download(row, o.Slice(m.Logits(), (T-1)*Vp, Vp))
		out = append(out, pick(row[:V], temperature, topK, rng))
		if each != nil {
			if err := each(out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func pick(logits []float32, temperature float64, topK int, rng *rand.Rand) int32 {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if temperature <= 0 {
		return int32(idx[0])
	}
	if topK > 0 && topK < len(idx) {
		idx = idx[:topK]
	}
	w := make([]float64, len(idx))
	var sum float64
	for i, j := range idx {
		w[i] = math.Exp((float64(logits[j]) - float64(logits[idx[0]])) / temperature)
		sum += w[i]
	}
	r := rng.Float64() * sum
	for i, v := range w {
		if r < v {
			return int32(idx[i])
		}
		r -= v
	}
	return int32(idx[len(idx)-1])
}
