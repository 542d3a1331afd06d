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
	// free is the device's free memory in bytes; 0: it cannot say.
	free() (int64, error)
}

// gemm is one cuBLAS-style product C = alpha·op(A)·op(B) + beta·C over
// column-major matrices, op(A) m×k, op(B) k×n.
type gemm struct {
	ta, tb        bool
	m, n, k       int
	alpha, beta   float32
	a, b, c       uintptr
	lda, ldb, ldc int
	round         bool // fp32 inputs rounded to bfloat16, fp32 accumulation
	abBF16        bool // A and B hold bfloat16 (fp32 accumulation)
	cBF16         bool // C holds bfloat16 (requires abBF16)
}

// Buf is a span of float32, or of bfloat16 when bf, in device memory.
type Buf struct {
	p  uintptr
	n  int
	bf bool
}

func (b Buf) Len() int { return b.n }

// size is the bytes of one value.
func (b Buf) size() int {
	if b.bf {
		return 2
	}
	return 4
}

func (b Buf) typ() string {
	if b.bf {
		return "bf16"
	}
	return "fp32"
}

// Ops implements kernels.Ops on a device.
type Ops struct {
	dev     device
	maxGrid int // blocks of a grid-stride launch at most
	err     error
	idx     [2]scratch // index lists uploaded for an op
	parts   scratch    // SumSquares's partial sums
	freqs   map[ropeKey]Buf
	bf16    map[string]bool
	// allocated is the device memory taken so far, in bytes: tensors and
	// the backend's own scratch (Allocated).
	allocated int64
	stage     *staging // Stager's slots; nil until the first Stage
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
	_ kernels.BF16Storage     = (*Ops)(nil)
)

// precisionOps are the ops with a BF16 variant: the matrix product
// (cuBLAS's bf16 tensor-core mode) and attention's forward and backward
// passes (wmma products; either backward pass follows either forward
// pass). The variant rounds an op's float32 inputs to bfloat16 (bfloat16
// inputs, kernels.BF16Storage's, are used as they are); the memory-bound
// ops gain nothing from rounding, and speed up instead with bfloat16
// storage.
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

// arg is a tensor an op was given, named for its errors.
type arg struct {
	name string
	b    Buf
}

// types checks the storage types of an op's tensors against
// kernels.BF16Storage's rules: acts (the activations; unset ones, nil
// optional tensors, are left out) all in one type, f32 all float32. It
// returns the suffix of the kernel for the activations' type ("" for
// float32, "_b" for bfloat16), or records the error and reports false.
func (o *Ops) types(op string, acts []arg, f32 ...arg) (string, bool) {
	if o.err != nil {
		return "", false
	}
	var first *arg
	for i := range acts {
		a := &acts[i]
		if a.b == (Buf{}) {
			continue
		}
		if first == nil {
			first = a
		} else if a.b.bf != first.b.bf {
			o.fail(op, fmt.Errorf("activations in two types: %s is %s, %s %s", first.name, first.b.typ(), a.name, a.b.typ()))
			return "", false
		}
	}
	for _, a := range f32 {
		if a.b.bf {
			o.fail(op, fmt.Errorf("%s is bf16; it takes fp32 only", a.name))
			return "", false
		}
	}
	if first != nil && first.b.bf {
		return "_b", true
	}
	return "", true
}

// pair is the suffix of a kernel built for each pairing of a dst and a
// src type: "" for fp32 from fp32, else a letter for each (f or b).
func pair(dst, src Buf) string {
	if !dst.bf && !src.bf {
		return ""
	}
	l := func(b Buf) string {
		if b.bf {
			return "b"
		}
		return "f"
	}
	return "_" + l(dst) + l(src)
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
	o.allocated += int64(n)
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
	if p := o.staged(v); p != 0 { // on the device already (Stager)
		return p
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

func (o *Ops) Alloc(n int) kernels.Buf { return o.alloc("Alloc", n, false) }

// AllocBF16 allocates n zeroed bfloat16 values (kernels.BF16Storage).
func (o *Ops) AllocBF16(n int) kernels.Buf { return o.alloc("AllocBF16", n, true) }

// IsBF16 reports whether b holds bfloat16 values.
func (o *Ops) IsBF16(b kernels.Buf) bool { return buf(b).bf }

func (o *Ops) alloc(op string, n int, bf bool) Buf {
	b := Buf{n: n, bf: bf}
	if o.err != nil {
		return b
	}
	bytes := b.size() * max(n, 1)
	p, err := o.dev.alloc(bytes)
	o.fail(op, err)
	if err == nil {
		o.allocated += int64(bytes)
	}
	b.p = p
	return b
}

func (o *Ops) Slice(b kernels.Buf, off, n int) kernels.Buf {
	x := buf(b)
	if off < 0 || n < 0 || off+n > x.n {
		panic(fmt.Sprintf("cuda: slice [%d:%d] of %d values", off, off+n, x.n))
	}
	return Buf{x.p + uintptr(x.size()*off), n, x.bf}
}

// Upload rounds to bfloat16 on the host for a bfloat16 dst (as the kernels
// round).
func (o *Ops) Upload(dst kernels.Buf, src []float32) {
	d := buf(dst)
	if !o.check("Upload", d.n == len(src), "%d values into %d", len(src), d.n) || len(src) == 0 {
		return
	}
	if d.bf {
		h := make([]uint16, len(src))
		for i, v := range src {
			h[i] = kernels.ToBF16(v)
		}
		o.fail("Upload", o.dev.upload(d.p, unsafe.Pointer(&h[0]), 2*len(h)))
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
	switch {
	case len(dst) == 0:
	case s.bf:
		h := make([]uint16, len(dst))
		o.fail("Download", o.dev.download(unsafe.Pointer(&h[0]), s.p, 2*len(h)))
		for i, v := range h {
			dst[i] = kernels.FromBF16(v)
		}
	default:
		o.fail("Download", o.dev.download(unsafe.Pointer(&dst[0]), s.p, 4*len(dst)))
	}
	if o.err != nil {
		clear(dst)
	}
}

func (o *Ops) Fill(b kernels.Buf, v float32) {
	x := buf(b)
	if sfx, ok := o.types("Fill", []arg{{"b", x}}); ok {
		o.launch1("Fill", "fill"+sfx, x.n, x, v, int64(x.n))
	}
}

// Copy converts between the types (rounding to bfloat16 as the kernels
// do).
func (o *Ops) Copy(dst, src kernels.Buf) {
	d, s := buf(dst), buf(src)
	if !o.check("Copy", d.n == s.n, "%d values into %d", s.n, d.n) || d.n == 0 {
		return
	}
	if d.bf == s.bf {
		o.fail("Copy", o.dev.copy(d.p, s.p, d.size()*d.n))
		return
	}
	o.launch1("Copy", "convert"+pair(d, s), d.n, d, s, int64(d.n))
}

func (o *Ops) Axpy(y kernels.Buf, a float32, x kernels.Buf) {
	yb, xb := buf(y), buf(x)
	if o.check("Axpy", yb.n == xb.n, "lengths %d and %d", yb.n, xb.n) {
		o.launch1("Axpy", "axpy"+pair(yb, xb), yb.n, yb, a, xb, int64(yb.n))
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
	sfx, _ := o.types("SumSquares", []arg{{"b", x}})
	o.launch("SumSquares", "sum_squares"+sfx, [3]int{g, 1, 1}, [3]int{threads, 1, 1}, o.parts.p, x, int64(x.n))
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
	if _, ok := o.types("MatMul", []arg{{"A", ab}, {"B", bb}}); !ok {
		return
	}
	if !o.check("MatMul", ab.bf || !cb.bf, "fp32 A and B into a bf16 C: cuBLAS has no such product") {
		return
	}
	g := gemm{ta: tb, tb: ta, m: n, n: m, k: k, alpha: alpha, beta: beta, a: bb.p, b: ab.p, c: cb.p, ldc: n,
		round: o.bf16["MatMul"] && !ab.bf, abBF16: ab.bf, cBF16: cb.bf}
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
	yb, bb := buf(y), buf(bias)
	if sfx, ok := o.types("AddBias", []arg{{"y", yb}}, arg{"bias", bb}); ok {
		o.launch1("AddBias", "add_bias"+sfx, rows*cols, yb, bb, int64(rows), int32(cols))
	}
}

// colSums launches col_sums (sfx: a's and b's type) over cols columns.
func (o *Ops) colSums(op, sfx string, dst, dst2, a, b, m, s uintptr, rows, cols int) {
	if cols == 0 {
		return
	}
	o.launch(op, "col_sums"+sfx, [3]int{(cols + 31) / 32, 1, 1}, [3]int{32, 8, 1}, dst, dst2, a, b, m, s, int32(rows), int32(cols))
}

func (o *Ops) BiasGrad(db, dy kernels.Buf, rows, cols int) {
	dbb, dyb := buf(db), buf(dy)
	if sfx, ok := o.types("BiasGrad", []arg{{"dy", dyb}}, arg{"db", dbb}); ok {
		o.colSums("BiasGrad", sfx, dbb.p, 0, dyb.p, 0, 0, 0, rows, cols)
	}
}

func (o *Ops) Embed(out, wte, wpe kernels.Buf, ids []int32, B, T, C int) {
	ob, eb, pb := buf(out), buf(wte), buf(wpe)
	sfx, ok := o.types("Embed", []arg{{"out", ob}}, arg{"wte", eb}, arg{"wpe", pb})
	if !ok || !o.check("Embed", len(ids) >= B*T, "%d ids for %d×%d", len(ids), B, T) {
		return
	}
	p := o.ints("Embed", 0, ids[:B*T])
	o.launch1("Embed", "embed"+sfx, B*T*C, ob, eb, pb, p, int32(B), int32(T), int32(C))
}

func (o *Ops) EmbedBackward(dwte, dwpe, dout kernels.Buf, ids []int32, B, T, C int) {
	eb, pb, db := buf(dwte), buf(dwpe), buf(dout)
	sfx, ok := o.types("EmbedBackward", []arg{{"dout", db}}, arg{"dwte", eb}, arg{"dwpe", pb})
	if !ok || !o.check("EmbedBackward", len(ids) >= B*T, "%d ids for %d×%d", len(ids), B, T) {
		return
	}
	p := o.ints("EmbedBackward", 0, ids[:B*T])
	o.launch1("EmbedBackward", "embed_backward_wte"+sfx, B*T*C, eb, db, p, int64(B*T), int32(C))
	o.launch1("EmbedBackward", "embed_backward_wpe"+sfx, T*C, pb, db, int32(B), int32(T), int32(C))
}

// ---- norms and activations ----

func (o *Ops) LayerNorm(out, mean, rstd, x, w, b kernels.Buf, rows, C int) {
	ob, mb, rb, xb, wb, bb := buf(out), buf(mean), buf(rstd), buf(x), buf(w), buf(b)
	if sfx, ok := o.types("LayerNorm", []arg{{"out", ob}, {"x", xb}}, arg{"mean", mb}, arg{"rstd", rb}, arg{"w", wb}, arg{"b", bb}); ok {
		o.launchRows("LayerNorm", "layernorm"+sfx, rows, ob, mb, rb, xb, wb, bb, int32(rows), int32(C))
	}
}

func (o *Ops) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd kernels.Buf, rows, C int) {
	dxb, dwb, dbb, gb, xb, wb, mb, rb := buf(dx), buf(dw), buf(db), buf(dout), buf(x), buf(w), buf(mean), buf(rstd)
	sfx, ok := o.types("LayerNormBackward", []arg{{"dx", dxb}, {"dout", gb}, {"x", xb}}, arg{"dw", dwb}, arg{"db", dbb}, arg{"w", wb}, arg{"mean", mb}, arg{"rstd", rb})
	if ok {
		o.launchRows("LayerNormBackward", "layernorm_backward"+sfx, rows, dxb, gb, xb, wb, mb, rb, int32(rows), int32(C))
		o.colSums("LayerNormBackward", sfx, dbb.p, dwb.p, gb.p, xb.p, mb.p, rb.p, rows, C)
	}
}

func (o *Ops) RMSNorm(out, rstd, x, w kernels.Buf, rows, C int, eps float32) {
	ob, rb, xb, wb := buf(out), buf(rstd), buf(x), buf(w)
	if sfx, ok := o.types("RMSNorm", []arg{{"out", ob}, {"x", xb}}, arg{"rstd", rb}, arg{"w", wb}); ok {
		o.launchRows("RMSNorm", "rmsnorm"+sfx, rows, ob, rb, xb, wb, int32(rows), int32(C), eps)
	}
}

func (o *Ops) RMSNormBackward(dx, dw, dout, x, w, rstd kernels.Buf, rows, C int) {
	dxb, dwb, gb, xb, wb, rb := buf(dx), buf(dw), buf(dout), buf(x), buf(w), buf(rstd)
	if sfx, ok := o.types("RMSNormBackward", []arg{{"dx", dxb}, {"dout", gb}, {"x", xb}}, arg{"dw", dwb}, arg{"w", wb}, arg{"rstd", rb}); ok {
		o.launchRows("RMSNormBackward", "rmsnorm_backward"+sfx, rows, dxb, gb, xb, wb, rb, int32(rows), int32(C))
		o.colSums("RMSNormBackward", sfx, 0, dwb.p, gb.p, xb.p, 0, rb.p, rows, C)
	}
}

func (o *Ops) GELU(out, x kernels.Buf) {
	ob, xb := buf(out), buf(x)
	if sfx, ok := o.types("GELU", []arg{{"out", ob}, {"x", xb}}); ok {
		o.launch1("GELU", "gelu"+sfx, xb.n, ob, xb, int64(xb.n))
	}
}

func (o *Ops) GELUBackward(dx, x, dout kernels.Buf) {
	dxb, xb, gb := buf(dx), buf(x), buf(dout)
	if sfx, ok := o.types("GELUBackward", []arg{{"dx", dxb}, {"x", xb}, {"dout", gb}}); ok {
		o.launch1("GELUBackward", "gelu_backward"+sfx, xb.n, dxb, xb, gb, int64(xb.n))
	}
}

func (o *Ops) SwiGLU(out, h kernels.Buf, rows, F int) {
	ob, hb := buf(out), buf(h)
	if sfx, ok := o.types("SwiGLU", []arg{{"out", ob}, {"h", hb}}); ok {
		o.launch1("SwiGLU", "swiglu"+sfx, rows*F, ob, hb, int64(rows), int32(F))
	}
}

func (o *Ops) SwiGLUBackward(dh, h, dout kernels.Buf, rows, F int) {
	dhb, hb, gb := buf(dh), buf(h), buf(dout)
	if sfx, ok := o.types("SwiGLUBackward", []arg{{"dh", dhb}, {"h", hb}, {"dout", gb}}); ok {
		o.launch1("SwiGLUBackward", "swiglu_backward"+sfx, rows*F, dhb, hb, gb, int64(rows), int32(F))
	}
}

// RoPE's inverse frequencies are computed here exactly as the CPU backend
// computes them and uploaded once per (theta, HS).
func (o *Ops) RoPE(x kernels.Buf, B, T, heads, HS, width, off int, theta float32, inverse bool) {
	xb := buf(x)
	sfx, ok := o.types("RoPE", []arg{{"x", xb}})
	if !ok || !o.check("RoPE", HS%2 == 0, "odd head size %d", HS) {
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
	o.launch1("RoPE", "rope"+sfx, B*T*heads*HS/2, xb, f, int32(B), int32(T), int32(heads), int32(HS), int32(width), int32(off), inv)
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
	ob, ab, qb := buf(out), buf(att), buf(qkv)
	sfx, ok := o.types("Attention", []arg{{"out", ob}, {"qkv", qb}}, arg{"att", ab})
	if !ok || !o.attentionShape("Attention", B, T, NH, NKV, HS) {
		return
	}
	if o.bf16["Attention"] {
		o.launch("Attention", "attention_tc"+sfx, [3]int{(T + 31) / 32, NH, B}, [3]int{64, 1, 1}, ob, ab, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		return
	}
	o.launchRows("Attention", "attention"+sfx, B*NH*T, ob, ab, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
}

func (o *Ops) AttentionBackward(dqkv, dout, out, qkv, att kernels.Buf, B, T, NH, NKV, HS int) {
	db, gb, ob, qb, ab := buf(dqkv), buf(dout), buf(out), buf(qkv), buf(att)
	sfx, ok := o.types("AttentionBackward", []arg{{"dqkv", db}, {"dout", gb}, {"out", ob}, {"qkv", qb}}, arg{"att", ab})
	if !ok || !o.attentionShape("AttentionBackward", B, T, NH, NKV, HS) {
		return
	}
	if o.bf16["AttentionBackward"] {
		o.launch("AttentionBackward", "attention_backward_dq_tc"+sfx, [3]int{(T + 15) / 16, NH, B}, [3]int{32, 1, 1}, db, ab, gb, ob, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		o.launch("AttentionBackward", "attention_backward_dkv_tc"+sfx, [3]int{(T + 15) / 16, NKV, B}, [3]int{32, 1, 1}, db, ab, gb, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
		return
	}
	o.launchRows("AttentionBackward", "attention_backward_dq"+sfx, B*NH*T, db, ab, gb, ob, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
	o.launchRows("AttentionBackward", "attention_backward_dkv"+sfx, B*NKV*T, db, ab, gb, qb, int32(B), int32(T), int32(NH), int32(NKV), int32(HS))
}

// ---- classifier ----

func (o *Ops) CrossEntropy(losses, dlogits, logits kernels.Buf, targets []int32, rows, V, Vp int, scale float32) {
	lb, db, xb := buf(losses), buf(dlogits), buf(logits)
	sfx, ok := o.types("CrossEntropy", []arg{{"dlogits", db}, {"logits", xb}}, arg{"losses", lb})
	if !ok || !o.check("CrossEntropy", len(targets) >= rows && V <= Vp, "%d targets for %d rows, V %d of %d", len(targets), rows, V, Vp) || rows == 0 {
		return
	}
	for _, t := range targets[:rows] {
		if !o.check("CrossEntropy", t >= 0 && int(t) < V, "target %d outside the vocabulary of %d", t, V) {
			return
		}
	}
	p := o.ints("CrossEntropy", 0, targets[:rows])
	o.launch("CrossEntropy", "cross_entropy"+sfx, [3]int{rows, 1, 1}, [3]int{1024, 1, 1}, lb, db, xb, p, int32(V), int32(Vp), scale)
}

// ---- gathers and scatters ----

func (o *Ops) GatherRows(dst, src kernels.Buf, rows []int32, width int) {
	d, s := buf(dst), buf(src)
	p := o.ints("GatherRows", 0, rows)
	o.launch1("GatherRows", "gather_rows"+pair(d, s), len(rows)*width, d, s, p, int32(len(rows)), int32(width))
}

func (o *Ops) ScatterAddRows(dst, src kernels.Buf, rows []int32, width int) {
	d, s := buf(dst), buf(src)
	if sfx, ok := o.types("ScatterAddRows", []arg{{"src", s}}, arg{"dst", d}); ok {
		p := o.ints("ScatterAddRows", 0, rows)
		o.launch1("ScatterAddRows", "scatter_add_rows"+sfx, len(rows)*width, d, s, p, int32(len(rows)), int32(width))
	}
}

func (o *Ops) GatherCols(dst, src kernels.Buf, n, width int, cols []int32) {
	d, s := buf(dst), buf(src)
	p := o.ints("GatherCols", 0, cols)
	o.launch1("GatherCols", "gather_cols"+pair(d, s), n*len(cols), d, s, int32(n), int32(width), p, int32(len(cols)))
}

func (o *Ops) ScatterAddCols(dst, src kernels.Buf, n, width int, cols []int32) {
	d, s := buf(dst), buf(src)
	if sfx, ok := o.types("ScatterAddCols", []arg{{"src", s}}, arg{"dst", d}); ok {
		p := o.ints("ScatterAddCols", 0, cols)
		o.launch1("ScatterAddCols", "scatter_add_cols"+sfx, n*len(cols), d, s, int32(n), int32(width), p, int32(len(cols)))
	}
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
	p, g, mb, vb := buf(params), buf(grads), buf(m), buf(v)
	if _, ok := o.types("AdamW", nil, arg{"params", p}, arg{"grads", g}, arg{"m", mb}, arg{"v", vb}); !ok || !o.check("AdamW", a.Step >= 1, "step %d (1-based)", a.Step) {
		return
	}
	args := append([]any{p, g, mb, vb, int64(p.n)}, adamwConsts(a)...)
	o.launch1("AdamW", "adamw", p.n, args...)
}

func (o *Ops) AdamWSub(params, grads, m, v kernels.Buf, width int, rows, cols []int32, a kernels.AdamWArgs) {
	p, g, mb, vb := buf(params), buf(grads), buf(m), buf(v)
	if _, ok := o.types("AdamWSub", nil, arg{"params", p}, arg{"grads", g}, arg{"m", mb}, arg{"v", vb}); !ok {
		return
	}
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
	args := append([]any{p, g, mb, vb, int32(width), rp, int32(nr), cp, int32(nc)}, adamwConsts(a)...)
	o.launch1("AdamWSub", "adamw_sub", nr*nc, args...)
}
