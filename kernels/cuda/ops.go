//go:build cuda || cudaemu

package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/estkit/estkit/kernels"
)

// device is what Ops needs of a GPU: memory, launches of the kernels of
// kernels.cu, and a column-major matrix product with cuBLAS's semantics.
// The driver (build tag cuda) implements it on an NVIDIA GPU, the
// emulator (build tag cudaemu) on the CPU.
type device interface {
	name() string
	alloc(bytes int) (uintptr, error) // zeroed
	upload(dst uintptr, src unsafe.Pointer, bytes int) error
	download(dst unsafe.Pointer, src uintptr, bytes int) error
	copy(dst, src uintptr, bytes int) error
	launch(kernel string, grid, block [3]int, args []uint64) error
	gemm(g gemm) error
	sync() error // waits for the work queued so far
}

// gemm is one cuBLAS-style product C = alpha·op(A)·op(B) + beta·C over
// column-major matrices, op(A) m×k, op(B) k×n.
type gemm struct {
	ta, tb        bool
	m, n, k       int
	alpha, beta   float32
	a, b, c       uintptr
	lda, ldb, ldc int
	bf16          bool // inputs rounded to bfloat16, fp32 accumulation
}

// Buf is a span of float32 in device memory.
type Buf struct {
	p uintptr
	n int
}

func (b Buf) Len() int { return b.n }

// Ops implements kernels.Ops on a device.
type Ops struct {
	dev     device
	maxGrid int // blocks of a grid-stride launch at most
	err     error
	idx     [2]scratch // index lists uploaded for an op
	parts   scratch    // SumSquares's partial sums
	freqs   map[ropeKey]Buf
	bf16    map[string]bool
}

type scratch struct {
	p     uintptr
	bytes int
}

type ropeKey struct {
	theta float32
	hs    int
}

func newOps(d device) *Ops {
	return &Ops{dev: d, maxGrid: 1 << 16, freqs: map[ropeKey]Buf{}, bf16: map[string]bool{}}
}

var (
	_ kernels.Ops             = (*Ops)(nil)
	_ kernels.PrecisionSetter = (*Ops)(nil)
)

// precisionOps are the ops with a BF16 variant: the matrix product
// (cuBLAS's bf16 tensor-core mode) and attention's forward and backward
// passes (wmma products; either backward pass follows either forward
// pass).
var precisionOps = map[string]bool{"MatMul": true, "Attention": true, "AttentionBackward": true}

// SetPrecision selects the variant op (a method name of kernels.Ops) runs
// in. Only the ops with a variant in that precision accept it.
func (o *Ops) SetPrecision(op string, p kernels.Precision) error {
	switch {
	case p == kernels.FP32:
		delete(o.bf16, op)
	case p == kernels.BF16 && precisionOps[op]:
		o.bf16[op] = true
	default:
		return fmt.Errorf("cuda: %s has no %s variant", op, p)
	}
	return nil
}

func (o *Ops) Name() string { return "cuda (" + o.dev.name() + ")" }

func (o *Ops) Err() error { return o.err }

// Sync waits for the ops queued so far (kernel launches return before the
// kernels run) and returns Err: for timings, and to surface a kernel's
// failure at a known point.
func (o *Ops) Sync() error {
	if o.err == nil {
		o.fail("Sync", o.dev.sync())
	}
	return o.err
}

// fail keeps the first error, naming the op.
func (o *Ops) fail(op string, err error) {
	if o.err == nil && err != nil {
		o.err = fmt.Errorf("cuda: %s: %w", op, err)
	}
}

func buf(b kernels.Buf) Buf {
	if b == nil {
		return Buf{}
	}
	return b.(Buf)
}

// check records a shape error for op unless ok; it reports whether the
// op may go on.
func (o *Ops) check(op string, ok bool, format string, args ...any) bool {
	if o.err != nil {
		return false
	}
	if !ok {
		o.fail(op, fmt.Errorf(format, args...))
	}
	return ok
}

// args packs launch arguments, each in a 64-bit slot: Buf and uintptr as
// pointers, int32 as int, int64 as long, float32 as float.
func packArgs(args []any) ([]uint64, string, error) {
	out, kinds := make([]uint64, len(args)), make([]byte, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case Buf:
			out[i], kinds[i] = uint64(v.p), 'p'
		case uintptr:
			out[i], kinds[i] = uint64(v), 'p'
		case int32:
			out[i], kinds[i] = uint64(uint32(v)), 'i'
		case int64:
			out[i], kinds[i] = uint64(v), 'l'
		case float32:
			out[i], kinds[i] = uint64(math.Float32bits(v)), 'f'
		default:
			return nil, "", fmt.Errorf("argument %d of type %T", i, a)
		}
	}
	return out, string(kinds), nil
}

// launch runs kernel over grid × block for op, checking its arguments
// against the kernel's signature first.
func (o *Ops) launch(op, kernel string, grid, block [3]int, args ...any) {
	if o.err != nil {
		return
	}
	slots, kinds, err := packArgs(args)
	if err == nil && kernelSigs[kernel] != kinds {
		err = fmt.Errorf("kernel %s takes (%s), given (%s)", kernel, kernelSigs[kernel], kinds)
	}
	if err == nil && (grid[0] < 1 || grid[0] > 1<<31-1 || grid[1] < 1 || grid[1] > 65535 || grid[2] < 1 || grid[2] > 65535) {
		// CUDA's limits on a grid's dimensions (x, then y and z)
		err = fmt.Errorf("kernel %s: grid %v is outside CUDA's limits (x up to 2³¹−1, y and z up to 65535)", kernel, grid)
	}
	if err == nil {
		err = o.dev.launch(kernel, grid, block, slots)
	}
	o.fail(op, err)
}

const (
	threads  = 256
	rowWarps = 4 // warps (rows) per block of the row kernels
)

// launch1 runs a grid-stride kernel over n items, in at most maxGrid
// blocks: the loops cover the rest.
func (o *Ops) launch1(op, kernel string, n int, args ...any) {
	if n == 0 {
		return
	}
	g := min((n+threads-1)/threads, o.maxGrid)
	o.launch(op, kernel, [3]int{g, 1, 1}, [3]int{threads, 1, 1}, args...)
}

// launchRows runs a kernel with one warp per row.
func (o *Ops) launchRows(op, kernel string, rows int, args ...any) {
	if rows == 0 {
		return
	}
	o.launch(op, kernel, [3]int{(rows + rowWarps - 1) / rowWarps, 1, 1}, [3]int{32 * rowWarps, 1, 1}, args...)
}

// ensure grows s to hold bytes.
func (o *Ops) ensure(op string, s *scratch, bytes int) bool {
	if o.err != nil {
		return false
	}
	if s.bytes >= bytes {
		return true
	}
	n := max(bytes, 2*s.bytes, 4096)
	p, err := o.dev.alloc(n)
	if err != nil {
		o.fail(op, err)
		return false
	}
	// the old scratch is left to the process: index lists are small and
	// grow a few times per run
	*s = scratch{p, n}
	return true
}

// ints uploads an index list to scratch slot k; nil stays a null pointer.
func (o *Ops) ints(op string, k int, v []int32) uintptr {
	if v == nil || o.err != nil {
		return 0
	}
	if !o.ensure(op, &o.idx[k], 4*len(v)+4) {
		return 0
	}
	if len(v) > 0 {
		o.fail(op, o.dev.upload(o.idx[k].p, unsafe.Pointer(&v[0]), 4*len(v)))
	}
	return o.idx[k].p
}

// ---- memory ----

func (o *Ops) Alloc(n int) kernels.Buf {
	if o.err != nil {
		return Buf{n: n}
	}
	p, err := o.dev.alloc(4 * max(n, 1))
	o.fail("Alloc", err)
	return Buf{p, n}
}

func (o *Ops) Slice(b kernels.Buf, off, n int) kernels.Buf {
	x := buf(b)
	if off < 0 || n < 0 || off+n > x.n {
		panic(fmt.Sprintf("cuda: slice [%d:%d] of %d values", off, off+n, x.n))
	}
	return Buf{x.p + uintptr(4*off), n}
}

func (o *Ops) Upload(dst kernels.Buf, src []float32) {
	d := buf(dst)
	if !o.check("Upload", d.n == len(src), "%d values into %d", len(src), d.n) || len(src) == 0 {
		return
	}
	o.fail("Upload", o.dev.upload(d.p, unsafe.Pointer(&src[0]), 4*len(src)))
}

func (o *Ops) Download(dst []float32, src kernels.Buf) {
	s := buf(src)
	if !o.check("Download", s.n == len(dst), "%d values into %d", s.n, len(dst)) {
		clear(dst)
		return
	}
	if len(dst) > 0 {
		o.fail("Download", o.dev.download(unsafe.Pointer(&dst[0]), s.p, 4*len(dst)))
	}
	if o.err != nil {
		clear(dst)
	}
}

func (o *Ops) Fill(b kernels.Buf, v float32) {
	x := buf(b)
	o.launch1("Fill", "fill", x.n, x, v, int64(x.n))
}

func (o *Ops) Copy(dst, src kernels.Buf) {
	d, s := buf(dst), buf(src)
	if o.check("Copy", d.n == s.n, "%d values into %d", s.n, d.n) && d.n > 0 {
		o.fail("Copy", o.dev.copy(d.p, s.p, 4*d.n))
	}
}

func (o *Ops) Axpy(y kernels.Buf, a float32, x kernels.Buf) {
	yb, xb := buf(y), buf(x)
	if o.check("Axpy", yb.n == xb.n, "lengths %d and %d", yb.n, xb.n) {
		o.launch1("Axpy", "axpy", yb.n, yb, a, xb, int64(yb.n))
	}
}

func (o *Ops) SumSquares(b kernels.Buf) float64 {
	x := buf(b)
	if x.n == 0 || o.err != nil {
		return 0
	}
	g := min((x.n+threads-1)/threads, 1024, o.maxGrid)
	if !o.ensure("SumSquares", &o.parts, 8*g) {
		return 0
	}
	o.launch("SumSquares", "sum_squares", [3]int{g, 1, 1}, [3]int{threads, 1, 1}, o.parts.p, x, int64(x.n))
	parts := make([]float64, g)
	if o.err == nil {
		o.fail("SumSquares", o.dev.download(unsafe.Pointer(&parts[0]), o.parts.p, 8*g))
	}
	var s float64
	for _, v := range parts {
		s += v
	}
	return s
}

// ---- products, bias, embedding ----

// MatMul maps the row-major product onto cuBLAS's column-major one: a
// row-major X is the column-major Xᵀ, so C = op(A)·op(B) is computed as
// Cᵀ = op(B)ᵀ·op(A)ᵀ.
func (o *Ops) MatMul(c, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32) {
	cb, ab, bb := buf(c), buf(a), buf(b)
	if !o.check("MatMul", cb.n >= m*n && ab.n >= m*k && bb.n >= k*n, "%d×%d×%d on buffers of %d, %d, %d", m, n, k, ab.n, bb.n, cb.n) || m == 0 || n == 0 {
		return
	}
	g := gemm{ta: tb, tb: ta, m: n, n: m, k: k, alpha: alpha, beta: beta, a: bb.p, b: ab.p, c: cb.p, ldc: n, bf16: o.bf16["MatMul"]}
	g.lda, g.ldb = n, k
	if tb {
		g.lda = k
	}
	if ta {
		g.ldb = m
	}
	// cuBLAS wants leading dimensions of at least 1, also when k is 0
	g.lda, g.ldb = max(g.lda, 1), max(g.ldb, 1)
	o.fail("MatMul", o.dev.gemm(g))
}

func (o *Ops) AddBias(y, bias kernels.Buf, rows, cols int) {
	o.launch1("AddBias", "add_bias", rows*cols, buf(y), buf(bias), int64(rows), int32(cols))
}

// colSums launches col_sums over cols columns.
func (o *Ops) colSums(op string, dst, dst2, a, b, m, s uintptr, rows, cols int) {
	if cols == 0 {
		return
	}
	o.launch(op, "col_sums", [3]int{(cols + 31) / 32, 1, 1}, [3]int{32, 8, 1}, dst, dst2, a, b, m, s, int32(rows), int32(cols))
}

func (o *Ops) BiasGrad(db, dy kernels.Buf, rows, cols int) {
	o.colSums("BiasGrad", buf(db).p, 0, buf(dy).p, 0, 0, 0, rows, cols)
}

func (o *Ops) Embed(out, wte, wpe kernels.Buf, ids []int32, B, T, C int) {
	if !o.check("Embed", len(ids) >= B*T, "%d ids for %d×%d", len(ids), B, T) {
		return
	}
	p := o.ints("Embed", 0, ids[:B*T])
	o.launch1("Embed", "embed", B*T*C, buf(out), buf(wte), buf(wpe), p, int32(B), int32(T), int32(C))
}

func (o *Ops) EmbedBackward(dwte, dwpe, dout kernels.Buf, ids []int32, B, T, C int) {
	if !o.check("EmbedBackward", len(ids) >= B*T, "%d ids for %d×%d", len(ids), B, T) {
		return
	}
	p := o.ints("EmbedBackward", 0, ids[:B*T])
	o.launch1("EmbedBackward", "embed_backward_wte", B*T*C, buf(dwte), buf(dout), p, int64(B*T), int32(C))
	o.launch1("EmbedBackward", "embed_backward_wpe", T*C, buf(dwpe), buf(dout), int32(B), int32(T), int32(C))
}

// ---- norms and activations ----

func (o *Ops) LayerNorm(out, mean, rstd, x, w, b kernels.Buf, rows, C int) {
	o.launchRows("LayerNorm", "layernorm", rows, buf(out), buf(mean), buf(rstd), buf(x), buf(w), buf(b), int32(rows), int32(C))
}

func (o *Ops) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd kernels.Buf, rows, C int) {
	o.launchRows("LayerNormBackward", "layernorm_backward", rows, buf(dx), buf(dout), buf(x), buf(w), buf(mean), buf(rstd), int32(rows), int32(C))
	o.colSums("LayerNormBackward", buf(db).p, buf(dw).p, buf(dout).p, buf(x).p, buf(mean).p, buf(rstd).p, rows, C)
}

func (o *Ops) RMSNorm(out, rstd, x, w kernels.Buf, rows, C int, eps float32) {
	o.launchRows("RMSNorm", "rmsnorm", rows, buf(out), buf(rstd), buf(x), buf(w), int32(rows), int32(C), eps)
}

func (o *Ops) RMSNormBackward(dx, dw, dout, x, w, rstd kernels.Buf, rows, C int) {
	o.launchRows("RMSNormBackward", "rmsnorm_backward", rows, buf(dx), buf(dout), buf(x), buf(w), buf(rstd), int32(rows), int32(C))
	o.colSums("RMSNormBackward", 0, buf(dw).p, buf(dout).p, buf(x).p, 0, buf(rstd).p, rows, C)
}

func (o *Ops) GELU(out, x kernels.Buf) {
	xb := buf(x)
	o.launch1("GELU", "gelu", xb.n, buf(out), xb, int64(xb.n))
}

func (o *Ops) GELUBackward(dx, x, dout kernels.Buf) {
	xb := buf(x)
	o.launch1("GELUBackward", "gelu_backward", xb.n, buf(dx), xb, buf(dout), int64(xb.n))
}

func (o *Ops) SwiGLU(out, h kernels.Buf, rows, F int) {
	o.launch1("SwiGLU", "swiglu", rows*F, buf(out), buf(h), int64(rows), int32(F))
}

func (o *Ops) SwiGLUBackward(dh, h, dout kernels.Buf, rows, F int) {
	o.launch1("SwiGLUBackward", "swiglu_backward", rows*F, buf(dh), buf(h), buf(dout), int64(rows), int32(F))
}

// RoPE's inverse frequencies are computed here exactly as the CPU backend
// computes them and uploaded once per (theta, HS).
func (o *Ops) RoPE(x kernels.Buf, B, T, heads, HS, width, off int, theta float32, inverse bool) {
	if !o.check("RoPE", HS%2 == 0, "odd head size %d", HS) {
		return
	}
	k := ropeKey{theta, HS}
	f, ok := o.freqs[k]
	if !ok {
		inv := make([]float32, HS/2)
		for i := range inv {
			inv[i] = 1 / float32(math.Pow(float64(theta), float64(float32(2*i)/float32(HS))))
		}
		f = o.Alloc(len(inv)).(Buf)
		o.Upload(f, inv)
		if o.err != nil {
			return
		}
		o.freqs[k] = f
	}
	inv := int32(0)
	if inverse {
		inv = 1
	}
	o.launch1("RoPE", "rope", B*T*heads*HS/2, buf(x), f, int32(B), int32(T), int32(heads), int32(HS), int32(width), int32(off), inv)
}

// ---- attention ----

// maxHeadSize is the largest head the attention kernels hold in registers
// (four values per lane).
const maxHeadSize = 128

// AttentionState: the log-sum-exp of each query row, then (written by the
// backward pass) dout·out of each.
func (o *Ops) AttentionState(B, NH, T int) int { return 2 * B * NH * T }

func (o *Ops) attentionShape(op string, B, T, NH, NKV, HS int) bool {
	return o.check(op, HS <= maxHeadSize && NKV > 0 && NH%NKV == 0, "heads %d/%d of size %d (at most %d)", NH, NKV, HS, maxHeadSize)
}

func (o *Ops) Attention(out, att, qkv kernels.Buf, B, T, NH, NKV, HS int) {
	if !o.attentionShape("Attention", B, T, NH, NKV, HS) {
		return
	}
	if o.bf16["Attention"] {
		o.launch("Attention", "attention_bf16", [3]int{(T + 31) / 32, NH, B}, [3]int{64, 1, 1}, buf(out), buf(att), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		return
	}
	o.launchRows("Attention", "attention", B*NH*T, buf(out), buf(att), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
}

func (o *Ops) AttentionBackward(dqkv, dout, out, qkv, att kernels.Buf, B, T, NH, NKV, HS int) {
	if !o.attentionShape("AttentionBackward", B, T, NH, NKV, HS) {
		return
	}
	if o.bf16["AttentionBackward"] {
		o.launch("AttentionBackward", "attention_backward_dq_bf16", [3]int{(T + 15) / 16, NH, B}, [3]int{32, 1, 1}, buf(dqkv), buf(att), buf(dout), buf(out), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		o.launch("AttentionBackward", "attention_backward_dkv_bf16", [3]int{(T + 15) / 16, NKV, B}, [3]int{32, 1, 1}, buf(dqkv), buf(att), buf(dout), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		return
	}
	o.launchRows("AttentionBackward", "attention_backward_dq", B*NH*T, buf(dqkv), buf(att), buf(dout), buf(out), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
	o.launchRows("AttentionBackward", "attention_backward_dkv", B*NKV*T, buf(dqkv), buf(att), buf(dout), buf(qkv), int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
}

// ---- classifier ----

func (o *Ops) CrossEntropy(losses, dlogits, logits kernels.Buf, targets []int32, rows, V, Vp int, scale float32) {
	if !o.check("CrossEntropy", len(targets) >= rows && V <= Vp, "%d targets for %d rows, V %d of %d", len(targets), rows, V, Vp) || rows == 0 {
		return
	}
	for _, t := range targets[:rows] {
		if !o.check("CrossEntropy", t >= 0 && int(t) < V, "target %d outside the vocabulary of %d", t, V) {
			return
		}
	}
	p := o.ints("CrossEntropy", 0, targets[:rows])
	o.launch("CrossEntropy", "cross_entropy", [3]int{rows, 1, 1}, [3]int{1024, 1, 1}, buf(losses), buf(dlogits), buf(logits), p, int32(V), int32(Vp), scale)
}

// ---- gathers and scatters ----

func (o *Ops) GatherRows(dst, src kernels.Buf, rows []int32, width int) {
	p := o.ints("GatherRows", 0, rows)
	o.launch1("GatherRows", "gather_rows", len(rows)*width, buf(dst), buf(src), p, int32(len(rows)), int32(width))
}

func (o *Ops) ScatterAddRows(dst, src kernels.Buf, rows []int32, width int) {
	p := o.ints("ScatterAddRows", 0, rows)
	o.launch1("ScatterAddRows", "scatter_add_rows", len(rows)*width, buf(dst), buf(src), p, int32(len(rows)), int32(width))
}

func (o *Ops) GatherCols(dst, src kernels.Buf, n, width int, cols []int32) {
	p := o.ints("GatherCols", 0, cols)
	o.launch1("GatherCols", "gather_cols", n*len(cols), buf(dst), buf(src), int32(n), int32(width), p, int32(len(cols)))
}

func (o *Ops) ScatterAddCols(dst, src kernels.Buf, n, width int, cols []int32) {
	p := o.ints("ScatterAddCols", 0, cols)
	o.launch1("ScatterAddCols", "scatter_add_cols", n*len(cols), buf(dst), buf(src), int32(n), int32(width), p, int32(len(cols)))
}

// ---- AdamW ----

// adamwConsts are the per-update constants, computed as the CPU backend
// computes them, in the kernels' argument order after the tensors.
func adamwConsts(a kernels.AdamWArgs) []any {
	bc1 := float32(1 - math.Pow(float64(a.Beta1), float64(a.Step)))
	scale := a.GradScale
	if scale == 0 {
		scale = 1
	}
	rbc2 := float32(1 / math.Sqrt(1-math.Pow(float64(a.Beta2), float64(a.Step))))
	return []any{a.Beta1, a.Beta2, a.Eps, scale, 1 - a.LR*a.WeightDecay, a.LR / bc1, rbc2}
}

func (o *Ops) AdamW(params, grads, m, v kernels.Buf, a kernels.AdamWArgs) {
	p := buf(params)
	if !o.check("AdamW", a.Step >= 1, "step %d (1-based)", a.Step) {
		return
	}
	args := append([]any{p, buf(grads), buf(m), buf(v), int64(p.n)}, adamwConsts(a)...)
	o.launch1("AdamW", "adamw", p.n, args...)
}

func (o *Ops) AdamWSub(params, grads, m, v kernels.Buf, width int, rows, cols []int32, a kernels.AdamWArgs) {
	p := buf(params)
	if !o.check("AdamWSub", a.Step >= 1 && width > 0 && p.n%width == 0, "step %d, width %d of %d values", a.Step, width, p.n) {
		return
	}
	nr, nc := p.n/width, width
	if rows != nil {
		nr = len(rows)
	}
	if cols != nil {
		nc = len(cols)
	}
	rp, cp := o.ints("AdamWSub", 0, rows), o.ints("AdamWSub", 1, cols)
	args := append([]any{p, buf(grads), buf(m), buf(v), int32(width), rp, int32(nr), cp, int32(nc)}, adamwConsts(a)...)
	o.launch1("AdamWSub", "adamw_sub", nr*nc, args...)
}
