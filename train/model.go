package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/kernels"
)

// ModelConfig is the shape of a model; Arch names its family (families:
// "gpt2", also when empty, or "llama").
type ModelConfig struct {
	Arch     string `json:"arch,omitempty"`
	Vocab    int    `json:"vocab"`  // real vocabulary (GPT-2: 50257)
	Padded   int    `json:"padded"` // vocabulary rounded up for the matrix products (50304); logits beyond Vocab are ignored
	Layers   int    `json:"layers"`
	Heads    int    `json:"heads"`              // query heads
	KVHeads  int    `json:"kv_heads,omitempty"` // Llama: key/value heads (grouped-query attention); 0: Heads
	Channels int    `json:"channels"`
	FF       int    `json:"ff,omitempty"` // Llama: MLP width; GPT-2's is 4·Channels
	MaxT     int    `json:"max_t"`        // GPT-2: position embeddings; Llama: the context it is built for
	// Llama: rotary embedding base and RMSNorm epsilon.
	RopeTheta float64 `json:"rope_theta,omitempty"`
	NormEps   float64 `json:"norm_eps,omitempty"`
}

// UnmarshalJSON reads a model shape by its snake_case keys or the earlier
// CamelCase ones (the Go field names: config.json files of earlier runs
// use them), spelled exactly, and refuses a key it does not know or one
// given under both spellings.
func (c *ModelConfig) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	known := map[string]string{} // by either spelling: the snake_case key
	t := reflect.TypeFor[ModelConfig]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name], known[t.Field(i).Name] = name, name
	}
	norm := map[string]json.RawMessage{}
	for k, v := range raw {
		key, ok := known[k]
		if !ok {
			return fmt.Errorf("train: model shape: unknown key %q", k)
		}
		if _, dup := norm[key]; dup {
			return fmt.Errorf("train: model shape: key %q given twice (as %q and in another spelling)", key, k)
		}
		norm[key] = v
	}
	nb, err := json.Marshal(norm)
	if err != nil {
		return err
	}
	type plain ModelConfig // without this method
	var p plain
	if err := json.Unmarshal(nb, &p); err != nil {
		return fmt.Errorf("train: model shape: %w", err)
	}
	*c = ModelConfig(p)
	return nil
}

// Presets of model sizes: GPT-2's, and TinyLlama 1.1B with small Llamas of
// its shape ratios (8 query heads per key/value head, MLP 2.75× wide).
var Presets = map[string]ModelConfig{
	"gpt2-124m": {Vocab: 50257, Padded: 50304, Layers: 12, Heads: 12, Channels: 768, MaxT: 1024},
	"gpt2-350m": {Vocab: 50257, Padded: 50304, Layers: 24, Heads: 16, Channels: 1024, MaxT: 1024},
	"gpt2-mini": {Vocab: 50257, Padded: 50304, Layers: 6, Heads: 6, Channels: 384, MaxT: 512},
	"gpt2-tiny": {Vocab: 50257, Padded: 50304, Layers: 4, Heads: 4, Channels: 128, MaxT: 256},

	"tinyllama-1.1b": {Arch: "llama", Vocab: 32000, Padded: 32000, Layers: 22, Heads: 32, KVHeads: 4, Channels: 2048, FF: 5632, MaxT: 2048, RopeTheta: 10000, NormEps: 1e-5},
	"llama-mini":     {Arch: "llama", Vocab: 32000, Padded: 32000, Layers: 8, Heads: 8, KVHeads: 1, Channels: 512, FF: 1408, MaxT: 1024, RopeTheta: 10000, NormEps: 1e-5},
	"llama-tiny":     {Arch: "llama", Vocab: 32000, Padded: 32000, Layers: 4, Heads: 8, KVHeads: 1, Channels: 256, FF: 704, MaxT: 512, RopeTheta: 10000, NormEps: 1e-5},
}

// KV is the number of key/value heads.
func (c ModelConfig) KV() int {
	if c.KVHeads > 0 {
		return c.KVHeads
	}
	return c.Heads
}

// MLP is the MLP's width (its neurons), as the family sets it (0 for an
// unknown Arch).
func (c ModelConfig) MLP() int {
	if f := c.family(); f != nil {
		return f.ff(c)
	}
	return 0
}

// Check validates a model shape: its family, the sizes every family
// shares, then what the family reads.
func (c ModelConfig) Check() error {
	f, err := familyOf(c.Arch)
	if err != nil {
		return err
	}
	switch {
	case c.Vocab <= 0 || c.Padded < c.Vocab || c.Layers <= 0 || c.Heads <= 0 || c.Channels <= 0 || c.MaxT <= 0:
		return fmt.Errorf("train: model shape %+v: sizes must be positive and Padded at least Vocab", c)
	case c.Channels%c.Heads != 0:
		return fmt.Errorf("train: %d channels do not split into %d heads", c.Channels, c.Heads)
	case c.Heads%c.KV() != 0:
		return fmt.Errorf("train: %d query heads do not split into groups of %d key/value heads", c.Heads, c.KV())
	}
	return f.check(c)
}

// Table returns the parameter table of the model (nil for an unknown
// Arch).
func (c ModelConfig) Table() []Param {
	f := c.family()
	if f == nil {
		return nil
	}
	t, _ := f.layout(c)
	return t
}

// NumParams is the total parameter count (padding rows included).
func (c ModelConfig) NumParams() int {
	t := c.Table()
	if len(t) == 0 {
		return 0
	}
	return t[len(t)-1].Offset + t[len(t)-1].Size
}

// InitParams fills a flat parameter vector as the table says: normal
// weights of each tensor's std, zero biases, unit norm weights; the
// vocabulary's padding rows are zero. Each tensor's values are drawn in
// PyTorch's layout and held as Param.Held (the same values whichever way a
// tensor is held).
func (c ModelConfig) InitParams(seed uint64) []float32 {
	p := make([]float32, c.NumParams())
	c.initTensors(seed, func(e Param, x []float32) { copy(p[e.Offset:], x) })
	return p
}

// initTensors draws the initial values of each tensor in table order and
// hands them to put (x is reused between calls).
func (c ModelConfig) initTensors(seed uint64, put func(e Param, x []float32)) {
	t := c.Table()
	r := rand.New(rand.NewPCG(seed, 0x6770743221))
	var buf, tmp []float32
	for _, e := range t {
		if cap(buf) < e.Size {
			buf = make([]float32, e.Size)
		}
		x := buf[:e.Size]
		clear(x)
		switch {
		case e.Ones:
			for i := range x {
				x[i] = 1
			}
		case e.Std > 0:
			for i := range x {
				x[i] = float32(r.NormFloat64() * e.Std)
			}
		}
		if e.Vocab {
			clear(x[c.Vocab*c.Channels:])
		}
		tmp = relayoutTensor(e, x, tmp, false)
		put(e, x)
	}
}

// Param is one entry of the parameter table: it drives the memory layout,
// checkpoints, Hugging Face names and the optimizer.
type Param struct {
	Name  string // GPT-2: GPT2LMHeadModel's name without "transformer."; Llama: LlamaForCausalLM's, q/k/v and gate/up fused
	Shape []int  // PyTorch Linear convention: [out, in]; checkpoints and Hugging Face files keep it
	// T: held in memory transposed, [in, out] (Held), so that each of its
	// sampled units, which are PyTorch's columns, is a contiguous row: the
	// output projections of attention and of the MLP. The flat buffers
	// (Params, Grads, InitParams, SetParams) hold it so; HeldToTorch and
	// TorchToHeld convert a flat vector.
	T      bool
	Decay  bool // AdamW weight decay applies
	Std    float64
	Ones   bool // initialised to 1 (norm weights)
	Vocab  bool // rows are the (padded) vocabulary
	Layer  int  // block index, -1 outside the blocks
	Unit   unit // which rows or columns belong to sampled heads or neurons
	Offset int  // into the flat parameter buffer
	Size   int
}

// unit says how a block's tensor divides among EST's sampled units.
type unit int

const (
	unitNone       unit = iota
	unitQKVRows         // rows of fused q, k, v (weight or bias): query heads and their key/value heads
	unitHeadCols        // columns of the attention output projection
	unitNeuronRows      // rows of the MLP's input projection (weight or bias)
	unitGateUpRows      // rows of Llama's fused gate and up projections
	unitNeuronCols      // columns of the MLP's output projection
)

// table builds a parameter table in layout order.
type table []Param

// add appends a tensor and returns its index, which a family's layout
// records in its views.
func (t *table) add(name string, layer int, decay bool, std float64, ones bool, u unit, shape ...int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	off := 0
	if len(*t) > 0 {
		last := (*t)[len(*t)-1]
		off = last.Offset + last.Size
	}
	tr := u == unitHeadCols || u == unitNeuronCols
	*t = append(*t, Param{Name: name, Shape: shape, T: tr, Decay: decay, Std: std, Ones: ones, Layer: layer, Unit: u, Offset: off, Size: n})
	return len(*t) - 1
}

// Held is the tensor's shape in memory: Shape, or its transpose where T.
func (e Param) Held() []int {
	if e.T {
		return []int{e.Shape[1], e.Shape[0]}
	}
	return e.Shape
}

// HeldToTorch rewrites flat [NumParams], in the model's layout (each
// tensor as Param.Held), in place into PyTorch's (each as Param.Shape).
func (c ModelConfig) HeldToTorch(flat []float32) { relayout(c.Table(), flat, true) }

// TorchToHeld is HeldToTorch's inverse.
func (c ModelConfig) TorchToHeld(flat []float32) { relayout(c.Table(), flat, false) }

// relayout transposes each transposed tensor of table in flat, held to
// PyTorch's layout (toTorch) or back.
func relayout(table []Param, flat []float32, toTorch bool) {
	var tmp []float32
	for _, e := range table {
		if e.T {
			tmp = relayoutTensor(e, flat[e.Offset:e.Offset+e.Size], tmp, toTorch)
		}
	}
}

// relayoutTensor transposes v, tensor e's values, between its held layout
// and PyTorch's (toTorch: held to PyTorch), in place through tmp, which it
// returns (grown as needed) for the next call.
func relayoutTensor(e Param, v, tmp []float32, toTorch bool) []float32 {
	if !e.T {
		return tmp
	}
	if cap(tmp) < len(v) {
		tmp = make([]float32, len(v))
	}
	tmp = tmp[:len(v)]
	copy(tmp, v)
	r, c := e.Shape[0], e.Shape[1] // PyTorch's [r×c]; held [c×r]
	if toTorch {
		r, c = c, r
	}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			v[j*r+i] = tmp[i*c+j]
		}
	}
	return tmp
}

// Selection is the subnetwork of one step: the blocks that run, and in
// each the attention heads and MLP neurons that run, with the scales of
// their outputs (1/pH, 1/pM). A nil Layers runs every block; a nil entry
// of Heads or Neurons runs them all at scale 1. Heads are query heads; a
// key/value head runs when one of its query heads does.
type Selection struct {
	Layers  []int
	Heads   [][]int32 // by block index
	Neurons [][]int32
	HScale  float32 // 1/pH
	MScale  float32 // 1/pM
}

// kvHeads are the key/value heads the query heads read, in order.
func kvHeads(heads []int32, NH, NKV int) []int32 {
	var kv []int32
	for _, h := range heads {
		g := h / int32(NH/NKV)
		if len(kv) == 0 || kv[len(kv)-1] != g {
			kv = append(kv, g)
		}
	}
	return kv
}

// qkvRows lists the rows of a fused q, k, v projection that the query
// heads and their key/value heads own (queries of NH heads, then keys and
// values of NKV, each HS rows).
func qkvRows(heads []int32, NH, NKV, HS int) []int32 {
	kv := kvHeads(heads, NH, NKV)
	rows := make([]int32, 0, (len(heads)+2*len(kv))*HS)
	for _, part := range []struct {
		base  int
		heads []int32
	}{{0, heads}, {NH, kv}, {NH + NKV, kv}} {
		for _, h := range part.heads {
			for i := 0; i < HS; i++ {
				rows = append(rows, int32((part.base+int(h))*HS+i))
			}
		}
	}
	return rows
}

// headCols lists the columns of the attention output projection that the
// given heads feed.
func headCols(heads []int32, HS int) []int32 {
	cols := make([]int32, 0, len(heads)*HS)
	for _, h := range heads {
		for i := 0; i < HS; i++ {
			cols = append(cols, int32(int(h)*HS+i))
		}
	}
	return cols
}

// gateUpRows lists the rows of a fused gate and up projection (FF rows
// each) of the given neurons.
func gateUpRows(neurons []int32, FF int) []int32 {
	rows := make([]int32, 0, 2*len(neurons))
	rows = append(rows, neurons...)
	for _, n := range neurons {
		rows = append(rows, n+int32(FF))
	}
	return rows
}

// core is what every model shares: its shape, its table and the flat
// buffers of parameters, gradients and AdamW moments laid out by it.
type core struct {
	Cfg    ModelConfig
	fam    *Family
	ops    kernels.Ops
	table  []Param
	params kernels.Buf
	grads  kernels.Buf
	m, v   kernels.Buf // AdamW moments
	steps  [][]int32   // AdamW step counts, by table entry (stepCounts)
	// zero marks the table entries whose gradients are known to hold
	// zeros: AdamW left them so (kernels.GradZeroer) and no backward
	// pass has written them since. ZeroGrads passes them over.
	zero []bool
	// nonzero, for a tensor divided among sampled units (Param.Unit),
	// marks the units' rows or columns (unitAxis) that a backward pass may
	// have written since ZeroGrads left the tensor zero; nil where any
	// value may be nonzero (ZeroGrads has not run since its tensor was
	// last written, or a pass ran all its units). GradNorm reads only the
	// marked rows.
	nonzero [][]bool
	// bs is set when the activations are stored in bfloat16
	// (SetBF16Activations); pb is then a bfloat16 copy of Params, which
	// the matrix products read, refreshed by the first pass after the
	// parameters changed (stale).
	bs    kernels.BF16Storage
	pb    kernels.Buf
	stale bool
	// interrupt, if set, is asked between blocks of a pass; its error
	// ends the pass (SetInterrupt)
	interrupt func() error
	// blockDone, if set, is told each block whose backward pass is done
	// (SetBlockDone)
	blockDone func(layer int)
}

// newCore allocates the buffers of a model of family f laid out by table.
func newCore(ops kernels.Ops, cfg ModelConfig, f *Family, table []Param, params []float32) core {
	last := table[len(table)-1]
	n := last.Offset + last.Size
	c := core{Cfg: cfg, fam: f, ops: ops, table: table, stale: true}
	c.steps = stepCounts(c.table)
	c.zero = make([]bool, len(table))
	c.nonzero = make([][]bool, len(table))
	c.params = ops.Alloc(n)
	if params != nil {
		ops.Upload(c.params, params)
	}
	c.grads = ops.Alloc(n)
	c.m, c.v = ops.Alloc(n), ops.Alloc(n)
	return c
}

// checkParams validates a model's shape and its parameter count (nil
// params: zeros).
func checkParams(cfg ModelConfig, params []float32) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	if n := cfg.NumParams(); params != nil && len(params) != n {
		return fmt.Errorf("train: %d parameters given, the model has %d", len(params), n)
	}
	return nil
}

// Table is the model's parameter table.
func (g *core) Table() []Param { return g.table }

// Ops is the backend the model's buffers live on.
func (g *core) Ops() kernels.Ops { return g.ops }

// Params are the parameters [NumParams], laid out by the table (each
// tensor as Param.Held).
func (g *core) Params() kernels.Buf { return g.params }

// Grads are the gradients [NumParams], laid out as Params.
func (g *core) Grads() kernels.Buf { return g.grads }

// SetParams uploads host [NumParams], laid out as Params, as the
// parameters.
func (g *core) SetParams(host []float32) error {
	if len(host) != g.params.Len() {
		return fmt.Errorf("train: %d parameters given, the model has %d", len(host), g.params.Len())
	}
	g.ops.Upload(g.params, host)
	g.paramsChanged()
	return g.ops.Err()
}

// StepCounts is a copy of AdamW's step counts, by table entry (one per
// tensor, or one per row or column of a tensor that belongs to heads or
// neurons: stepCounts).
func (g *core) StepCounts() [][]int32 {
	out := make([][]int32, len(g.steps))
	for i, c := range g.steps {
		out[i] = slices.Clone(c)
	}
	return out
}

func (g *core) param(buf kernels.Buf, i int) kernels.Buf {
	e := g.table[i]
	return g.ops.Slice(buf, e.Offset, e.Size)
}

// need returns the first n values of *b, reallocating it when shorter.
func (g *core) need(b *kernels.Buf, n int) kernels.Buf {
	if *b == nil || (*b).Len() < n {
		*b = g.ops.Alloc(n)
	}
	return g.ops.Slice(*b, 0, n)
}

// needAct is need for an activation (or a gathered weight the products
// read): in bfloat16 when the model stores its activations so.
func (g *core) needAct(b *kernels.Buf, n int) kernels.Buf {
	if g.bs == nil {
		return g.need(b, n)
	}
	if *b == nil || (*b).Len() < n {
		*b = g.bs.AllocBF16(n)
	}
	return g.ops.Slice(*b, 0, n)
}

// allocAct allocates an activation of n values.
func (g *core) allocAct(n int) kernels.Buf {
	var b kernels.Buf
	return g.needAct(&b, n)
}

// setBF16 selects bfloat16 activations (on) or float32 ones; the model
// drops its forward state.
func (g *core) setBF16(on bool) error {
	if !on {
		g.bs = nil
		return nil
	}
	bs, err := bf16Store(g.ops)
	if err != nil {
		return err
	}
	if g.pb == nil { // kept when bf16 is turned off and on again
		g.pb = bs.AllocBF16(g.Cfg.NumParams())
	}
	g.bs, g.stale = bs, true
	return g.ops.Err()
}

// bf16Store is ops as a store of bfloat16 activations, or the error of a
// backend that stores float32 only.
func bf16Store(ops kernels.Ops) (kernels.BF16Storage, error) {
	bs, ok := ops.(kernels.BF16Storage)
	if !ok {
		return nil, fmt.Errorf("train: activations bf16: the %s backend stores float32 only (bf16 needs --device cuda)", ops.Name())
	}
	return bs, nil
}

// BF16Activations reports whether the activations are stored in bfloat16.
func (g *core) BF16Activations() bool { return g.bs != nil }

// weights is the buffer the matrix products read the weights from: Params,
// or their bfloat16 copy (refreshed here when stale).
func (g *core) weights() kernels.Buf {
	if g.bs == nil {
		return g.params
	}
	if g.stale {
		g.ops.Copy(g.pb, g.params)
		g.stale = false
	}
	return g.pb
}

// paramsChanged marks the bfloat16 copy of the weights stale: every write
// to Params outside the passes calls it.
func (g *core) paramsChanged() { g.stale = true }

// activeLayers are the blocks sel runs, in order.
func (g *core) activeLayers(sel *Selection) []int {
	if sel != nil && sel.Layers != nil {
		return sel.Layers
	}
	all := make([]int, g.Cfg.Layers)
	for i := range all {
		all[i] = i
	}
	return all
}

// blockShape is what block l computes under sel: its query heads and
// neurons (nil: all), their counts, and the key/value heads.
func (g *core) blockShape(sel *Selection, l int) (heads, neurons []int32, nh, nkv, ff int, hs, ms float32) {
	nh, nkv, ff, hs, ms = g.Cfg.Heads, g.Cfg.KV(), g.Cfg.MLP(), 1, 1
	if sel == nil {
		return
	}
	if l < len(sel.Heads) && sel.Heads[l] != nil {
		heads, nh, hs = sel.Heads[l], len(sel.Heads[l]), sel.HScale
		nkv = len(kvHeads(heads, g.Cfg.Heads, g.Cfg.KV()))
	}
	if l < len(sel.Neurons) && sel.Neurons[l] != nil {
		neurons, ff, ms = sel.Neurons[l], len(sel.Neurons[l]), sel.MScale
	}
	return
}

// checkHeads verifies that sampled query heads form whole, equal groups
// over their key/value heads (each key/value head read by the same number
// of query heads, in order), as grouped-query attention computes them.
// With a key/value head per query head (GPT-2) any heads do, in any order.
func (g *core) checkHeads(heads []int32) error {
	NH, NKV := g.Cfg.Heads, g.Cfg.KV()
	if heads == nil || NH == NKV {
		return nil
	}
	kv := kvHeads(heads, NH, NKV)
	if len(heads)%len(kv) != 0 || !slices.IsSorted(heads) {
		return fmt.Errorf("train: sampled heads %v do not form equal groups over key/value heads %v", heads, kv)
	}
	per := len(heads) / len(kv)
	for i, h := range heads {
		if h/int32(NH/NKV) != kv[i/per] {
			return fmt.Errorf("train: sampled heads %v do not form equal groups over key/value heads %v", heads, kv)
		}
	}
	return nil
}

// ZeroGrads clears the gradients of every parameter outside the skipped
// blocks, before the first micro-batch of a step. A skipped block's
// gradients are neither read nor updated in that step, so they are left
// as they are. Gradients the last AdamW left zero, and no backward pass
// has written since (core.zero), are not written again.
func (g *core) ZeroGrads(skipped map[int]bool) {
	for _, r := range g.tensorSpans(func(i int, e Param) bool { return (e.Layer < 0 || !skipped[e.Layer]) && !g.zero[i] }) {
		g.ops.Fill(g.ops.Slice(g.grads, r[0], r[1]-r[0]), 0)
	}
	for i, e := range g.table {
		if e.Unit == unitNone || skipped[e.Layer] {
			continue
		}
		if g.nonzero[i] == nil {
			n, _ := unitAxis(e)
			g.nonzero[i] = make([]bool, n)
		}
		clear(g.nonzero[i])
	}
}

// written notes that a backward pass under sel adds to the gradients of
// the blocks it runs (of their sampled units only) and to those of the
// parameters outside the blocks.
func (g *core) written(sel *Selection) {
	layers := g.activeLayers(sel)
	for i, e := range g.table {
		if e.Layer >= 0 && !slices.Contains(layers, e.Layer) {
			continue
		}
		g.zero[i] = false
		if g.nonzero[i] == nil {
			continue
		}
		heads, neurons, _, _, _, _, _ := g.blockShape(sel, e.Layer)
		idx := g.unitIdx(e, Units{heads, neurons})
		if idx == nil {
			g.nonzero[i] = nil
			continue
		}
		for _, k := range idx {
			g.nonzero[i][k] = true
		}
	}
}

// GradNorm is the global L2 norm of the gradients outside the skipped
// blocks. On a backend that sums many spans in one call
// (kernels.SpanSumSquarer), it reads of a weight whose sampled units ran
// in part since ZeroGrads only their rows (core.nonzero): the others hold
// zeros.
func (g *core) GradNorm(skipped map[int]bool) float64 {
	ss, _ := g.ops.(kernels.SpanSumSquarer)
	rows := func(i int) bool { return ss != nil && g.nonzero[i] != nil && g.rowWidth(i) > 0 } // read by rows
	var s float64
	for _, r := range g.tensorSpans(func(i int, e Param) bool { return (e.Layer < 0 || !skipped[e.Layer]) && !rows(i) }) {
		s += g.ops.SumSquares(g.ops.Slice(g.grads, r[0], r[1]-r[0]))
	}
	var spans [][2]int
	for i, e := range g.table {
		if (e.Layer >= 0 && skipped[e.Layer]) || !rows(i) {
			continue
		}
		w, nz := g.rowWidth(i), g.nonzero[i]
		for k := 0; k < len(nz); {
			if !nz[k] {
				k++
				continue
			}
			j := k
			for j < len(nz) && nz[j] {
				j++
			}
			spans = append(spans, [2]int{e.Offset + k*w, e.Offset + j*w})
			k = j
		}
	}
	if spans != nil {
		s += ss.SumSquaresSpans(g.grads, spans)
	}
	return math.Sqrt(s)
}

// rowWidth is the values of a row of tensor i, where its units are rows
// as it is held and wide enough to be read a row at a time in GradNorm
// (a bias, one value a unit, is read whole); else 0.
func (g *core) rowWidth(i int) int {
	e := g.table[i]
	if _, cols := unitAxis(e); cols || len(e.Shape) != 2 {
		return 0
	}
	return e.Held()[1]
}

// unitIdx lists the rows or columns (unitAxis) of tensor e that belong to
// the units u (nil: all of them, where u lists none of e's kind).
func (g *core) unitIdx(e Param, u Units) []int32 {
	c := g.Cfg
	NH, NKV, HS, FF := c.Heads, c.KV(), c.Channels/c.Heads, c.MLP()
	switch {
	case e.Layer < 0:
	case u.Heads != nil && e.Unit == unitQKVRows:
		return qkvRows(u.Heads, NH, NKV, HS)
	case u.Heads != nil && e.Unit == unitHeadCols:
		return headCols(u.Heads, HS)
	case u.Neurons != nil && e.Unit == unitNeuronRows:
		return u.Neurons
	case u.Neurons != nil && e.Unit == unitGateUpRows:
		return gateUpRows(u.Neurons, FF)
	case u.Neurons != nil && e.Unit == unitNeuronCols:
		return u.Neurons
	}
	return nil
}

// ranges are the spans [lo, hi) of the flat buffers that hold the
// parameters outside the skipped blocks, in offset order.
func (g *core) ranges(skipped map[int]bool) [][2]int {
	return g.spans(func(layer int) bool { return layer < 0 || !skipped[layer] })
}

// spans are the spans [lo, hi) of the flat buffers that hold the
// parameters of the blocks keep keeps (layer -1: outside every block), in
// offset order.
func (g *core) spans(keep func(layer int) bool) [][2]int {
	return g.tensorSpans(func(_ int, e Param) bool { return keep(e.Layer) })
}

// tensorSpans are the spans [lo, hi) of the flat buffers that hold the
// table entries keep keeps, in offset order.
func (g *core) tensorSpans(keep func(i int, e Param) bool) [][2]int {
	var spans [][2]int
	for i, e := range g.table {
		if !keep(i, e) {
			continue
		}
		spans = append(spans, [2]int{e.Offset, e.Offset + e.Size})
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out [][2]int
	for _, r := range spans {
		if n := len(out); n > 0 && out[n-1][1] == r[0] {
			out[n-1][1] = r[1]
			continue
		}
		out = append(out, r)
	}
	return out
}

// StepOptions are AdamW's settings for one step. AdamWArgs.Step is not
// read: the model counts the steps of each parameter itself (stepCounts).
type StepOptions struct {
	kernels.AdamWArgs
	// Skipped blocks, whose parameters keep their values, moments and step
	// counts (as PyTorch's AdamW skips parameters without a gradient).
	Skipped map[int]bool
	// Sampled, when not nil, limits the update of each running block to
	// the heads and neurons listed for it (EST's "sampled" update); a
	// block absent from it, or with nil lists, updates whole.
	Sampled map[int]Units
}

// Units are the attention heads and MLP neurons of one block (nil: all).
type Units struct {
	Heads, Neurons []int32
}

// stepCounts are AdamW's step counts, which its bias corrections use: one
// per tensor, as torch.optim.AdamW keeps one per parameter and skips a
// parameter without a gradient, so that a block EST skipped has taken
// fewer steps than the run. A tensor whose rows or columns belong to heads
// or neurons (Param.Unit) counts each row or column apart: under the
// "sampled" update only the sampled ones step (under "dense" all do, and
// the counts stay equal).
func stepCounts(table []Param) [][]int32 {
	out := make([][]int32, len(table))
	for i, e := range table {
		n, _ := unitAxis(e)
		out[i] = make([]int32, n)
	}
	return out
}

// unitAxis is the number of separately counted parts of a tensor (its
// rows, its columns, or 1: PyTorch's) and whether they are columns of the
// tensor as it is held (PyTorch's columns are rows of a tensor held
// transposed).
func unitAxis(e Param) (n int, cols bool) {
	switch e.Unit {
	case unitQKVRows, unitNeuronRows, unitGateUpRows:
		return e.Shape[0], false
	case unitHeadCols, unitNeuronCols:
		return e.Shape[1], !e.T
	}
	return 1, false
}

// Step applies AdamW to the parameters the step trained, each with its own
// step count; it returns the backend's error, if any. On a backend that
// can (kernels.GradZeroer), AdamW leaves 0 in each gradient it reads, so
// that the next ZeroGrads need not write the tensors it read whole; on one
// that can (kernels.GradRowsAdamWer), it does not read the rows of a
// weight that no backward pass wrote since ZeroGrads (core.nonzero).
func (g *core) Step(s StepOptions) error {
	gz, _ := g.ops.(kernels.GradZeroer)
	zeroes := gz != nil && gz.ZeroesGrads()
	ga, _ := g.ops.(kernels.GradRowsAdamWer)
	for i, e := range g.table {
		if e.Layer >= 0 && s.Skipped[e.Layer] {
			continue
		}
		a := s.AdamWArgs
		a.ZeroGrads = zeroes
		if !e.Decay {
			a.WeightDecay = 0
		}
		p, gr, m, v := g.param(g.params, i), g.param(g.grads, i), g.param(g.m, i), g.param(g.v, i)
		u := s.Sampled[e.Layer]
		width := 1
		if len(e.Shape) == 2 {
			width = e.Held()[1]
		}
		idx := g.unitIdx(e, u) // the rows or columns that step (nil: all)
		_, cols := unitAxis(e)
		for _, grp := range advance(g.steps[i], idx) {
			a.Step = int(grp.step)
			switch {
			case grp.idx == nil && ga != nil && g.nonzero[i] != nil && g.rowWidth(i) > 0:
				// the rows no backward pass wrote hold zeros (core.nonzero)
				ga.AdamWGradRows(p, gr, m, v, g.rowWidth(i), g.nonzero[i], a)
			case grp.idx == nil:
				g.ops.AdamW(p, gr, m, v, a)
			case cols:
				g.ops.AdamWSub(p, gr, m, v, width, nil, grp.idx, a)
			default:
				g.ops.AdamWSub(p, gr, m, v, width, grp.idx, nil, a)
			}
		}
		g.zero[i] = zeroes && idx == nil // every row and column read
	}
	g.paramsChanged()
	return g.ops.Err()
}

// stepGroup is the rows or columns of a tensor (nil: all of it) that
// share a step count.
type stepGroup struct {
	step int32
	idx  []int32
}

// advance counts a step of the parts idx of a tensor (nil: all) and
// returns them grouped by their counts, in increasing count order: one
// group, the whole tensor, when every part steps and all counts are equal.
func advance(counts, idx []int32) []stepGroup {
	if idx == nil {
		uniform := true
		for k := range counts {
			counts[k]++
			uniform = uniform && counts[k] == counts[0]
		}
		if uniform {
			return []stepGroup{{counts[0], nil}}
		}
		idx = make([]int32, len(counts))
		for k := range idx {
			idx[k] = int32(k)
		}
	} else {
		for _, k := range idx {
			counts[k]++
		}
	}
	by := map[int32][]int32{}
	for _, k := range idx {
		by[counts[k]] = append(by[counts[k]], k)
	}
	out := make([]stepGroup, 0, len(by))
	for n, list := range by {
		out = append(out, stepGroup{n, list})
	}
	slices.SortFunc(out, func(a, b stepGroup) int { return int(a.step - b.step) })
	return out
}

// checkBatch validates a forward pass's shape and token ids.
func checkBatch(c ModelConfig, ids, targets []int32, B, T int) error {
	if T > c.MaxT || len(ids) != B*T || (targets != nil && len(targets) != B*T) {
		return fmt.Errorf("train: forward of %d ids (%d targets) as %d×%d, max T %d", len(ids), len(targets), B, T, c.MaxT)
	}
	for _, list := range [][]int32{ids, targets} {
		for _, id := range list {
			if id < 0 || int(id) >= c.Vocab {
				return fmt.Errorf("train: token id %d outside the vocabulary (%d)", id, c.Vocab)
			}
		}
	}
	return nil
}

// meanLoss is the mean cross-entropy of logits[rows×Padded] at targets.
func meanLoss(o kernels.Ops, losses, logits kernels.Buf, targets []int32, rows int, c ModelConfig) (float32, error) {
	o.CrossEntropy(losses, nil, logits, targets, rows, c.Vocab, c.Padded, 0)
	l := make([]float32, rows)
	o.Download(l, losses)
	if err := o.Err(); err != nil {
		return 0, err
	}
	var s float64
	for _, v := range l {
		s += float64(v)
	}
	return float32(s / float64(rows)), nil
}

// Model is a trainable model: GPT-2 or Llama on a kernels backend.
type Model interface {
	Config() ModelConfig
	Table() []Param
	// Forward runs ids[B×T] through the subnetwork sel (nil: the full
	// model) and, with targets, returns the mean cross-entropy loss.
	Forward(ids, targets []int32, B, T int, sel *Selection) (float32, error)
	// Backward adds the gradients of the last Forward's mean loss, scaled
	// by gradScale, to the gradients.
	Backward(gradScale float32) error
	// ZeroGrads clears the gradients outside the skipped blocks before a
	// step's first Backward; it passes over those the last Step left at 0.
	ZeroGrads(skipped map[int]bool)
	GradNorm(skipped map[int]bool) float64
	// Step applies AdamW to the parameters outside the skipped blocks. On
	// a backend that can (kernels.GradZeroer: the CPU's), it leaves 0 in
	// every gradient value it read: read the gradients before it.
	Step(s StepOptions) error
	// ActivationFloats is the size of the forward state held now.
	ActivationFloats() int
	// Logits are the last Forward's logits [B·T × Padded].
	Logits() kernels.Buf
	// SetBF16Activations stores the activations (and a copy of the
	// weights for the matrix products) in bfloat16 on a backend that can
	// (kernels.BF16Storage: the CUDA one), or in float32 again; the
	// parameters, gradients and moments stay float32. It drops the forward
	// state: call it before a Forward, not between a Forward and its
	// Backward.
	SetBF16Activations(on bool) error
	BF16Activations() bool

	// Ops is the backend the model's buffers live on.
	Ops() kernels.Ops
	// Params and Grads are the flat parameters and gradients
	// [NumParams], laid out by Table, each tensor as Param.Held (the
	// output projections transposed from PyTorch's layout:
	// ModelConfig.HeldToTorch converts). Params is for reading (Download):
	// write parameters through SetParams or LoadTensors, which also
	// refresh their bfloat16 copy. Grads is written by Backward (and a
	// reduction of GradViews after it) alone: ZeroGrads trusts that what
	// the last Step left at 0 stays so until a Backward, and GradNorm and
	// Step that the rows of a sampled weight no Backward wrote since
	// ZeroGrads hold 0 (so a reduction combines processes that ran the
	// same subnetworks, as the sampler gives every rank).
	Params() kernels.Buf
	Grads() kernels.Buf
	// GradViews are views of Grads holding the parameters outside the
	// skipped blocks, in offset order: what a gradient reduction across
	// processes combines after a step's backward passes.
	GradViews(skipped map[int]bool) []kernels.Buf
	// SetParams uploads host [NumParams], laid out as Params, as the
	// parameters.
	SetParams(host []float32) error
	// StepCounts are AdamW's step counts by table entry (a copy).
	StepCounts() [][]int32
	// SaveTensors writes a checkpoint's tensors into dir: the parameters
	// and AdamW's moments (safetensors, by the table's names) and the step
	// counts, and returns each file's size and sha256.
	SaveTensors(dir string) ([]FileRecord, error)
	// LoadTensors reads what SaveTensors wrote: the parameters and, with
	// moments, the moments and step counts (resuming).
	LoadTensors(dir string, moments bool) error
	// SetInterrupt makes Forward and Backward ask f between blocks and
	// end with its error, so that a cancelled run stops within a block's
	// time (f = ctx.Err); nil: never. An interrupted pass leaves the
	// model's forward state and gradients unusable until the next Forward.
	SetInterrupt(f func() error)
	// SetBlockDone makes Backward call f(l) as soon as block l's backward
	// pass has added its last gradient (blocks in backward order), so that
	// a reduction across processes can start on them while the blocks
	// before it still run (Options.OverlapReduce); nil: never.
	SetBlockDone(f func(layer int))
	// LayerGradViews are views of Grads holding block layer's parameters,
	// or with layer -1 those outside every block, in offset order.
	LayerGradViews(layer int) []kernels.Buf
}

// SetInterrupt: see Model.
func (g *core) SetInterrupt(f func() error) { g.interrupt = f }

// interrupted is the interrupt's error, if any.
func (g *core) interrupted() error {
	if g.interrupt == nil {
		return nil
	}
	return g.interrupt()
}

// Config is the model's shape.
func (g *core) Config() ModelConfig { return g.Cfg }

// GradViews: see Model.
func (g *core) GradViews(skipped map[int]bool) []kernels.Buf {
	var views []kernels.Buf
	for _, r := range g.ranges(skipped) {
		views = append(views, g.ops.Slice(g.grads, r[0], r[1]-r[0]))
	}
	return views
}

// SetBlockDone: see Model.
func (g *core) SetBlockDone(f func(layer int)) { g.blockDone = f }

// LayerGradViews: see Model.
func (g *core) LayerGradViews(layer int) []kernels.Buf {
	var views []kernels.Buf
	for _, r := range g.spans(func(l int) bool { return l == layer }) {
		views = append(views, g.ops.Slice(g.grads, r[0], r[1]-r[0]))
	}
	return views
}

// weightGrad adds alpha·dyᵀ·x ([m×n] from dy [k×m] and x [k×n]) to the
// gradient dst of a weight: straight in when the whole weight ran, or
// through the scratch *gw and a scatter when only the rows (of width n) or
// the columns (of a weight width values wide) listed ran.
func (g *core) weightGrad(dst, dy, x kernels.Buf, m, n, k int, alpha float32, gw *kernels.Buf, rows, cols []int32, width int) {
	if rows == nil && cols == nil {
		g.ops.MatMul(dst, dy, x, m, n, k, true, false, alpha, 1)
		return
	}
	if sm, ok := g.ops.(kernels.SampledMatMuler); ok && sm.MatMulScatter(dst, dy, x, m, n, k, true, false, alpha, rows, cols, width) {
		return
	}
	buf := g.need(gw, m*n)
	g.ops.MatMul(buf, dy, x, m, n, k, true, false, alpha, 0)
	if rows != nil {
		g.ops.ScatterAddRows(dst, buf, rows, n)
	} else {
		g.ops.ScatterAddCols(dst, buf, m, width, cols)
	}
}

// stepsFile holds a checkpoint's AdamW step counts (docs/FORMATS.md).
const stepsFile = "adam_steps.json"

// stepsJSON is stepsFile: per tensor of the table, by name, its step
// counts: one for the whole tensor, or one per row or column (as
// stepCounts keeps them).
type stepsJSON struct {
	Format  string             `json:"format"`
	Tensors map[string][]int32 `json:"tensors"`
}

// saveSteps writes the step counts into dir, one count for a tensor whose
// counts are all equal.
func (g *core) saveSteps(dir string) (FileRecord, error) {
	s := stepsJSON{Format: "estkit-adam-steps", Tensors: map[string][]int32{}}
	for i, e := range g.table {
		c := g.steps[i]
		if !slices.ContainsFunc(c, func(n int32) bool { return n != c[0] }) {
			c = c[:1]
		}
		s.Tensors[e.Name] = c
	}
	b, err := json.Marshal(s)
	if err != nil {
		return FileRecord{}, fmt.Errorf("train: %w", err)
	}
	b = append(b, '\n')
	if err := durable.WriteFile(dir, stepsFile, b); err != nil {
		return FileRecord{}, fmt.Errorf("train: %w", err)
	}
	h := sha256.Sum256(b)
	return FileRecord{Name: stepsFile, Size: int64(len(b)), SHA256: hex.EncodeToString(h[:])}, nil
}

// loadSteps reads the step counts written by saveSteps.
func (g *core) loadSteps(dir string) error {
	path := filepath.Join(dir, stepsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("train: AdamW step counts: %w", err)
	}
	var s stepsJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if s.Format != "estkit-adam-steps" {
		return fmt.Errorf("train: %s: format %q, want estkit-adam-steps", path, s.Format)
	}
	for i, e := range g.table {
		c, ok := s.Tensors[e.Name]
		dst := g.steps[i]
		switch {
		case !ok:
			return fmt.Errorf("train: %s lacks the step counts of %s", path, e.Name)
		case len(c) != 1 && len(c) != len(dst):
			return fmt.Errorf("train: %s: %d step counts for %s, want 1 or %d", path, len(c), e.Name, len(dst))
		case slices.ContainsFunc(c, func(n int32) bool { return n < 0 }):
			return fmt.Errorf("train: %s: negative step count for %s", path, e.Name)
		case len(c) == 1:
			for k := range dst {
				dst[k] = c[0]
			}
		default:
			copy(dst, c)
		}
	}
	return nil
}
