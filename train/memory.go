package train

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/estkit/estkit/kernels"
)

// ErrMemory marks a configuration that needs more memory than there is.
var ErrMemory = errors.New("not enough memory")

// MemoryEstimate is what a training configuration needs at its largest
// step, in bytes (float64: an absurd shape must not overflow the sum).
type MemoryEstimate struct {
	Params, Grads, Moments float64 // float32 each; moments: AdamW's m and v
	// Activations: one micro-batch's forward state of every block, the
	// logits, the backward scratch and one block's gathered weights, at
	// the configuration's B×T (bfloat16 where it stores activations so).
	Activations float64
	// BF16Weights: the bfloat16 copy of the parameters the matrix
	// products read with bfloat16 activations (2 bytes each).
	BF16Weights float64
	// Host: the float32 copy of the parameters that initialisation builds
	// on the host (on the CPU it is counted once more, as the buffers are
	// separate allocations).
	Host float64
	// PerSequence is what one more sequence of the micro-batch adds.
	PerSequence float64
}

// Total is the sum.
func (e MemoryEstimate) Total() float64 {
	return e.Device() + e.Host
}

// Device is what a GPU backend holds in its own memory: all but the host
// copy.
func (e MemoryEstimate) Device() float64 {
	return e.Params + e.Grads + e.Moments + e.Activations + e.BF16Weights
}

// EstimateMemory is an upper estimate of the memory a step of cfg needs
// on ops (attention's state is the backend's), counted from the same
// buffers the model allocates (model.ensure and the forward and backward
// passes, as the family counts them: Family.memory) at the full model's
// size.
func EstimateMemory(ops kernels.Ops, cfg *Config) MemoryEstimate {
	m := cfg.Model
	L, T, NH := float64(m.Layers), float64(cfg.Seq), float64(m.Heads)
	var params, perTok, weights float64
	if f := m.family(); f != nil {
		params, perTok, weights = f.memory(m)
	}
	att := NH * T * T
	if att < 1<<40 {
		att = float64(ops.AttentionState(1, m.Heads, cfg.Seq))
	}
	act := 4.0
	if cfg.Activations == BF16 {
		act = 2
	}
	perSeq := act * (T*perTok + L*att)
	e := MemoryEstimate{Params: 4 * params, Grads: 4 * params, Moments: 8 * params,
		Activations: float64(cfg.Batch)*perSeq + act*weights, Host: 4 * params, PerSequence: perSeq}
	if cfg.Activations == BF16 {
		e.BF16Weights = 2 * params
	}
	return e
}

// MemoryReporter is a backend that knows how much memory it can allocate.
type MemoryReporter interface {
	MemoryAvailable() (int64, error)
}

// checkMemory refuses a configuration whose estimate exceeds limit (0:
// what the CPU's backend may use, from /proc/meminfo and the cgroup, or
// what a backend reports; below 0: no check), with the estimate and the
// largest micro-batch that fits. Against a backend's own memory (a GPU's,
// MemoryReporter) it counts only what that backend holds, not the host
// copy of the parameters.
func checkMemory(ops kernels.Ops, cfg *Config, limit int64) error {
	if limit < 0 {
		return nil
	}
	e := EstimateMemory(ops, cfg)
	need := e.Total
	where := "available"
	if limit == 0 {
		var err error
		switch r, ok := ops.(MemoryReporter); {
		case ok:
			if limit, err = r.MemoryAvailable(); err != nil {
				return fmt.Errorf("train: %w", err) // a device that cannot say what it has free fails its first allocation anyway
			}
			where, need = "free on the "+ops.Name()+" device", e.Device
		case ops.Name() == "cpu":
			limit, err = hostMemory()
		default:
			return nil // the backend cannot say; it fails at allocation with its own error
		}
		if err != nil || limit <= 0 {
			return nil
		}
	}
	if need() <= float64(limit) {
		return nil
	}
	fixed := need() - float64(cfg.Batch)*e.PerSequence
	fit := "none: the parameters, gradients and moments alone do not fit"
	if b := math.Floor((float64(limit) - fixed) / e.PerSequence); b >= 1 {
		fit = fmt.Sprintf("--batch %d (with --accum for the same tokens per step)", int64(b))
	}
	parts := fmt.Sprintf("parameters %s, gradients %s, AdamW moments %s, activations %s", bytesText(e.Params), bytesText(e.Grads), bytesText(e.Moments), bytesText(e.Activations))
	if e.BF16Weights > 0 {
		parts += ", bf16 weight copy " + bytesText(e.BF16Weights)
	}
	if need() == e.Total() {
		parts += ", host copy " + bytesText(e.Host)
	}
	return fmt.Errorf("train: %w: batch %d × seq %d of this %d-layer model needs about %s (%s); %s %s; largest micro-batch that fits: %s",
		ErrMemory, cfg.Batch, cfg.Seq, cfg.Model.Layers, bytesText(need()), parts, bytesText(float64(limit)), where, fit)
}

func bytesText(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return strconv.FormatFloat(b, 'f', 1, 64) + " " + units[i]
}

// hostMemory is the memory this process may still use: MemAvailable, or
// less where the cgroup's limit leaves less.
func hostMemory() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	var avail int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("train: /proc/meminfo: %w", err)
			}
			avail = kb << 10
		}
	}
	// The cgroup's limit less what the cgroup holds that cannot be
	// reclaimed (anonymous memory; page cache is given back on demand).
	maxB, err1 := os.ReadFile("/sys/fs/cgroup/memory.max")
	stat, err2 := os.ReadFile("/sys/fs/cgroup/memory.stat")
	if mx, e := strconv.ParseInt(strings.TrimSpace(string(maxB)), 10, 64); err1 == nil && err2 == nil && e == nil { // "max": no limit
		var anon int64
		for _, line := range strings.Split(string(stat), "\n") {
			if v, ok := strings.CutPrefix(line, "anon "); ok {
				anon, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if avail == 0 || mx-anon < avail {
			avail = mx - anon
		}
	}
	return avail, nil
}
