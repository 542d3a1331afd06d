package kernels

import (
	"fmt"
	"math"
	"time"
)

// Buf is storage owned by a backend: host memory for the CPU backend,
// device memory for a GPU backend. It holds float32 values, or bfloat16
// ones when a BF16Storage backend allocated it so. Trainers never touch its
// contents directly; they move data with Upload and Download, which convert
// (Len and offsets count values, whatever their size).
type Buf interface {
	Len() int
}

// Ops is every operation the trainers use, forward and backward. All
// tensors are row-major float32. A backward op accumulates (+=) into the
// gradients it is given unless it says otherwise, so that a parameter used
// twice (the tied GPT-2 embedding) or scattered from a sampled subnetwork
// sums its parts. Index lists (token ids, targets, sampled rows and
// columns) are host slices; a GPU backend uploads them.
type Ops interface {
	Name() string
	// Err is the first error an op met since the backend was made (nil
	// for the CPU backend, which has none). A GPU backend does nothing
	// after an error, and the error names the op; a trainer checks Err
	// once per step.
	Err() error

	// Memory.
	Alloc(n int) Buf             // zeroed
	Slice(b Buf, off, n int) Buf // a view of n values from off
	Upload(dst Buf, src []float32)
	Download(dst []float32, src Buf)
	Fill(b Buf, v float32)
	Copy(dst, src Buf)            // equal lengths
	Axpy(y Buf, a float32, x Buf) // y += a·x
	SumSquares(b Buf) float64

	// MatMul sets C[m×n] = alpha·op(A)·op(B) + beta·C, where op(A) is
	// A[m×k], or A[k×m] transposed when ta, and op(B) is B[k×n], or B[n×k]
	// transposed when tb (a PyTorch Linear weight W[out×in] as y = x·Wᵀ).
	MatMul(c, a, b Buf, m, n, k int, ta, tb bool, alpha, beta float32)
	// AddBias adds bias[cols] to every row of y[rows×cols].
	AddBias(y, bias Buf, rows, cols int)
	// BiasGrad adds the column sums of dy[rows×cols] to db[cols].
	BiasGrad(db, dy Buf, rows, cols int)

	// Embed sets out[b,t,:] = wte[ids[b,t],:] + wpe[t,:] for B×T ids.
	Embed(out, wte, wpe Buf, ids []int32, B, T, C int)
	EmbedBackward(dwte, dwpe, dout Buf, ids []int32, B, T, C int)

	// LayerNorm normalises each row of x[rows×C] (ε 1e-5), then scales
	// by w and shifts by b; it keeps each row's mean and 1/std for the
	// backward pass.
	LayerNorm(out, mean, rstd, x, w, b Buf, rows, C int)
	LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd Buf, rows, C int)

	// GELU, tanh approximation (GPT-2's).
	GELU(out, x Buf)
	GELUBackward(dx, x, dout Buf)

	// Attention: qkv[B,T,(NH+2·NKV)·HS] holds per position the queries of
	// NH heads, then the keys and then the values of NKV heads (NKV
	// divides NH; query head h reads key/value head h/(NH/NKV): grouped-
	// query attention, or multi-head when NKV = NH), each of size HS; out
	// [B,T,NH·HS] receives causal softmax(q·kᵀ/√HS)·v per query head, and
	// att, of AttentionState(B, NH, T) values, what the backward pass needs
	// besides out: the CPU backend keeps the probabilities [B,NH,T,T], a
	// GPU backend in the flash-attention style only per-row statistics.
	Attention(out, att, qkv Buf, B, T, NH, NKV, HS int)
	AttentionState(B, NH, T int) int
	// AttentionBackward adds to dqkv the gradient of the loss given dout,
	// the gradient at out, the output Attention wrote.
	AttentionBackward(dqkv, dout, out, qkv, att Buf, B, T, NH, NKV, HS int)

	// RMSNorm scales each row of x[rows×C] by 1/√(mean(x²)+eps), then by
	// w (Llama's norm); it keeps each row's 1/rms for the backward pass.
	RMSNorm(out, rstd, x, w Buf, rows, C int, eps float32)
	RMSNormBackward(dx, dw, dout, x, w, rstd Buf, rows, C int)

	// RoPE rotates in place, by rotary position embeddings (Hugging Face
	// Llama's convention: element i pairs with i+HS/2, frequency
	// theta^(−2i/HS), position t within each of the B sequences of T),
	// the heads heads of size HS found at offset off of every row of
	// width values in x[B,T,width]; inverse rotates back (the backward
	// pass: the rotation's transpose).
	RoPE(x Buf, B, T, heads, HS, width, off int, theta float32, inverse bool)

	// SwiGLU: h[rows×2F] holds per row the gate then the up projection;
	// out[rows×F] = silu(gate)·up.
	SwiGLU(out, h Buf, rows, F int)
	SwiGLUBackward(dh, h, dout Buf, rows, F int)

	// CrossEntropy computes, for each of rows rows of logits[rows×Vp]
	// (only the first V columns are real), the loss -log softmax at the
	// target into losses[rows]; when dlogits is not nil it also sets
	// dlogits = scale·(softmax − onehot(target)) over the first V columns
	// and 0 in the padding (overwriting, not accumulating).
	CrossEntropy(losses, dlogits, logits Buf, targets []int32, rows, V, Vp int, scale float32)

	// Gathers and scatters of weight rows and columns for sampled
	// subnetworks (index lists without repeats, as the sampler draws
	// them; AdamWSub's too). GatherRows: dst[i,:] = src[rows[i],:]; ScatterAddRows:
	// dst[rows[i],:] += src[i,:]; GatherCols: dst[r,j] = src[r,cols[j]]
	// for src[n×width]; ScatterAddCols: dst[r,cols[j]] += src[r,j].
	// GatherRows and ScatterAddRows also take a batch's token ids, which
	// repeat (the token embedding of a family without a position table):
	// a repeated row gets every add (in src's order on the CPU).
	GatherRows(dst, src Buf, rows []int32, width int)
	ScatterAddRows(dst, src Buf, rows []int32, width int)
	GatherCols(dst, src Buf, n, width int, cols []int32)
	ScatterAddCols(dst, src Buf, n, width int, cols []int32)

	// AdamW updates params in place from grads·a.GradScale with moments m
	// and v (PyTorch's torch.optim.AdamW: decoupled weight decay, bias
	// corrections for step a.Step ≥ 1). GradScale carries gradient
	// clipping, so that the gradients are read once.
	AdamW(params, grads, m, v Buf, a AdamWArgs)
	// AdamWSub is AdamW on a part of tensors of rows of width values: the
	// rows listed (all when rows is nil) and, within them, the columns
	// listed (all when cols is nil). The rest keeps its values and moments.
	AdamWSub(params, grads, m, v Buf, width int, rows, cols []int32, a AdamWArgs)
}

// BF16Storage is a backend that can also keep tensors in bfloat16 (the
// CUDA backend): half the memory and half the memory traffic of float32,
// which is what the memory-bound ops (norms, activations, attention's
// loads, the classifier) are limited by. Every op computes in float32 and
// rounds what it stores to bfloat16 (to nearest, ties to even; NaN stays
// NaN, as the canonical 0x7fff); an op that adds into a bfloat16 tensor
// rounds the sum.
//
// Each op takes its activations (the tensors with a row per token: x, out,
// dx, dout, qkv, h, logits and their gradients) in either type, all in the
// same one; weights, their gradients, AdamW's moments and the per-row
// statistics (mean, rstd, att, losses) are float32, except where an op says
// otherwise:
//   - Fill, SumSquares and RoPE take either type; Copy and Axpy any pair
//     (Copy converts);
//   - MatMul takes A and B in one type and C in float32 or, when A and B
//     are bfloat16, in bfloat16 too (a bfloat16 copy of the weights times
//     bfloat16 activations, into bfloat16 activations or float32 weight
//     gradients);
//   - the gathers take dst and src in any pair (float32 weights gathered
//     into a bfloat16 copy for the products); the scatters add src of
//     either type into float32 dst;
//   - AdamW and AdamWSub are float32 throughout.
//
// An op given another combination fails (Err names it) and writes nothing.
type BF16Storage interface {
	// AllocBF16 is Alloc for n bfloat16 values.
	AllocBF16(n int) Buf
	// IsBF16 reports whether b holds bfloat16 values.
	IsBF16(b Buf) bool
}

// SampledMatMuler is a backend whose products can read a weight's listed
// rows or columns where they lie, and add a weight gradient into its
// listed rows or columns, with the bits of the gathered products (the CPU
// backend with OpenBLAS): a sampled linear layer then needs neither the
// gathered copy of its weight nor the compact gradient. Each returns
// false where it does not apply, having written nothing; the trainer then
// gathers and scatters.
type SampledMatMuler interface {
	// MatMulSampled is MatMul(c, a, wₛ, m, n, k, ta, tb, alpha, beta)
	// where wₛ is what GatherRows(·, w, rows, width) or GatherCols(·, w,
	// ·, width, cols) would copy out of w (one list nil).
	MatMulSampled(c, a, w Buf, m, n, k int, ta, tb bool, alpha, beta float32, rows, cols []int32, width int) bool
	// MatMulScatter adds to dst what ScatterAddRows(dst, ·, rows, width)
	// or ScatterAddCols(dst, ·, m, width, cols) would of MatMul(·, a, b,
	// m, n, k, ta, tb, alpha, 0).
	MatMulScatter(dst, a, b Buf, m, n, k int, ta, tb bool, alpha float32, rows, cols []int32, width int) bool
}

// GradZeroer is a backend whose AdamW and AdamWSub honour
// AdamWArgs.ZeroGrads (the CPU backend). On the CPU the gradients' own
// zeroing pass, a write of every gradient before a step's first backward
// pass, took 17-19 ms of GPT-2 124M's 820 ms step at T=64; AdamW that
// writes the 0 into a line it has just read took 3 ms longer, the line
// being dirty from the backward pass already (BenchmarkStepOps,
// docs/PERF.md). A device's zeroing is a fraction of a millisecond.
type GradZeroer interface {
	ZeroesGrads() bool
}

// GradRowsAdamWer is a backend that updates a whole tensor of rows of
// width values by AdamW (AdamWArgs as AdamW's) reading the gradient of the
// rows has marks only: the others' gradients are 0, neither read nor
// written (the CPU backend). Under EST the rows of the neurons and heads
// a step did not run hold zeros; AdamW reads a quarter less of them so.
type GradRowsAdamWer interface {
	AdamWGradRows(p, g, m, v Buf, width int, has []bool, a AdamWArgs)
}

// Arithmeticer is a backend that names how its products sum: two
// processes whose names differ may give a step other last bits (the CPU
// backend: OpenBLAS's kernel table, and the CPU count a product is cut for
// where that table's bits depend on the cut). A run records it with each
// checkpoint, and a resume where it differs says so.
type Arithmeticer interface {
	Arithmetic() string
}

// SpanSumSquarer is a backend that sums the squares of many spans of a
// buffer in one call (the CPU backend): SumSquaresSpans(b, spans) is the
// sum, in the spans' order, of SumSquares of each span [lo, hi) of b. The
// gradient norm under EST reads only the rows of the sampled heads and
// neurons, thousands of spans a step, where a SumSquares per span would
// cost more than the values it skips.
type SpanSumSquarer interface {
	SumSquaresSpans(b Buf, spans [][2]int) float64
}

// Stager is a backend that moves a micro-batch's token ids and targets
// to the device ahead of the ops that read them (the CUDA backend):
// through page-locked host memory and on a copy stream of its own, so that
// the copy runs while the device computes what was queued before it (the
// previous micro-batch's backward pass, the previous step's update). A
// trainer without it hands the ops host slices, which the backend uploads
// as each op is queued, waiting for the device to get there.
type Stager interface {
	// Stage lends fill a staging slot's host slices, ids and targets of n
	// values each, to write a micro-batch into, then queues their copy to
	// the device and returns them. They stay the batch's until the second
	// Stage after this one; an error of fill is returned as it is.
	Stage(n int, fill func(ids, targets []int32) error) (ids, targets []int32, err error)
	// Wait orders the ops queued after it behind the last Stage's copy
	// (the host does not wait). From then until the next Wait or Stage, an
	// op given the slices that Stage returned, or a prefix of them, reads
	// the device's copy instead of uploading them.
	Wait() error
	// Waited is how long the device sat idle for the batches staged since
	// the last call: from finishing the work queued before each Stage
	// until the compute after its Wait could start (so the loader's time
	// where the device had nothing else to do, and the copy's where it
	// did not overlap). It waits for the device to pass those points.
	Waited() (time.Duration, error)
}

// ToBF16 rounds f to the nearest bfloat16 (ties to even; every NaN
// becomes the canonical NaN 0x7fff) and returns its bits: the rounding of
// CUDA's __float2bfloat16 (cvt.rn.bf16.f32) on sm_80 and later.
func ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return 0x7fff
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// FromBF16 is the float32 a bfloat16's bits stand for (exact).
func FromBF16(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// RoundBF16 is f rounded to bfloat16, as a float32.
func RoundBF16(f float32) float32 { return FromBF16(ToBF16(f)) }

// AdamWArgs are AdamW's settings for one update.
type AdamWArgs struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	GradScale                          float32 // gradients are multiplied by this first (0 is taken as 1)
	Step                               int     // 1-based, for the bias corrections
	// ZeroGrads asks the update to leave 0 in each gradient value it
	// reads, on a backend that can (GradZeroer; others ignore it): the
	// next step's zeroing, done while the value is in cache.
	ZeroGrads bool
}

// Precision selects the variant an op runs in.
type Precision int

const (
	// FP32 computes in float32 throughout: the variant every op has, and
	// the one to compare with the CPU backend.
	FP32 Precision = iota
	// BF16 rounds an op's inputs to bfloat16 and accumulates in float32.
	BF16
)

func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// PrecisionSetter is a backend with variants of some ops in other
// precisions (the CUDA backend); SetPrecision selects the variant op (a
// method name of Ops) runs in, or says that op has none in p.
type PrecisionSetter interface {
	SetPrecision(op string, p Precision) error
}
