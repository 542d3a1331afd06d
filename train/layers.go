package train

import (
	"fmt"

	"github.com/estkit/estkit/kernels"
)

// The forward and backward passes of every family: a pre-norm decoder
// (embedding, blocks of norm → attention → residual and norm → MLP →
// residual, a final norm and the LM head), written once over the views a
// family's layout names in its parameter table and the kinds of norm,
// position encoding and MLP its Family value states. Each layer pass is
// one method, as in llm.c.

// modelView names the tensors of a model by their table indices, built
// once by the family's layout as it adds them to the table, so that no
// pass counts offsets.
type modelView struct {
	tokens    int // token embedding [Padded × C]
	positions int // learned position embedding [MaxT × C]; -1: none (rotary)
	norm      normView
	head      int // LM head [Padded × C]; the token embedding when tied
	blocks    []blockView
}

// blockView names one block's tensors.
type blockView struct {
	norm1 normView
	qkv   linearView // fused q, k and v: rows of the sampled heads
	proj  linearView // attention output: columns of the sampled heads
	norm2 normView
	up    linearView // MLP input (with SwiGLU, gate rows then up rows): rows of the sampled neurons
	down  linearView // MLP output: columns of the sampled neurons
}

// normView is a norm's weight and, for LayerNorm, its bias.
type normView struct{ w, b int }

// linearView is a linear layer's weight [out × in] and bias [out] (-1:
// none).
type linearView struct{ w, b int }

// normKind is a family's normalisation.
type normKind int

const (
	layerNorm normKind = iota // weight and bias, ε 1e-5 (GPT-2)
	rmsNorm                   // weight only, ε ModelConfig.NormEps (Llama)
)

// mlpKind is a family's MLP nonlinearity.
type mlpKind int

const (
	geluMLP   mlpKind = iota // up [FF × C], GELU (tanh approximation)
	swigluMLP                // up [2·FF × C]: gate rows then up rows, silu(gate)·up
)

// model is a Model of any family: the core's buffers, the family's views
// into them, and one micro-batch's forward state.
type model struct {
	core
	view modelView

	B, T    int
	act     *acts
	ids     []int32
	targets []int32
	sel     *Selection
	inputs  map[int]kernels.Buf // residual stream entering each active block
	final   kernels.Buf         // residual stream after the last active block
}

// acts hold one micro-batch's forward state. Each running block takes the
// next slot, and a slot's buffers are sized to what its block computes,
// growing when a later step needs more: a stage that runs half the blocks
// at half width holds about a quarter of the full model's block
// activations.
type acts struct {
	x0           kernels.Buf // embeddings
	slots        []*blockAct
	nf, nfm, nfr kernels.Buf // final norm: output, mean (LayerNorm), reciprocal deviation
	logits       kernels.Buf
	losses       kernels.Buf
	dres, dtmp   kernels.Buf // backward scratch, sized to the largest need
	dnf          kernels.Buf
	dqkv, datty  kernels.Buf
	dup, dact    kernels.Buf
	gw, gb       kernels.Buf
	qkv, proj    gathered // one block's gathered weights, shared by all blocks
	up, down     gathered
}

// gathered is a sampled linear layer's compact weight and bias, where the
// backend cannot read the weight's rows or columns in place
// (kernels.SampledMatMuler: the CPU backend with OpenBLAS can). They are
// gathered in the forward pass and again in the backward pass rather than
// held per block, so that a sampled step holds less than a full one: the
// backward pass's gathers were about 3% of GPT-2 124M's CPU step at T=64
// and the 0.5:0.5:1 rates (BenchmarkStepOps), a tenth of that at T=1024,
// where holding them would cost 170 MB.
type gathered struct{ w, b kernels.Buf }

// blockAct is one running block's state: its output and the values its
// backward pass needs.
type blockAct struct {
	out, x1        kernels.Buf
	n1, n1m, n1r   kernels.Buf // first norm: output, mean (LayerNorm), reciprocal deviation
	qkv, atty, att kernels.Buf
	n2, n2m, n2r   kernels.Buf
	up, act        kernels.Buf // MLP input projection and its nonlinearity
}

// newModel allocates the model cfg describes on ops with params (nil:
// zeros).
func newModel(ops kernels.Ops, cfg ModelConfig, params []float32) (*model, error) {
	f, err := familyOf(cfg.Arch)
	if err != nil {
		return nil, err
	}
	if err := checkParams(cfg, params); err != nil {
		return nil, err
	}
	table, view := f.layout(cfg)
	return &model{core: newCore(ops, cfg, f, table, params), view: view}, nil
}

// Logits are the last Forward's logits [B·T × Padded].
func (m *model) Logits() kernels.Buf { return m.act.logits }

// SetBF16Activations stores the activations in bfloat16 (Model).
func (m *model) SetBF16Activations(on bool) error {
	m.act = nil
	return m.setBF16(on)
}

func (m *model) slot(i int) *blockAct {
	for len(m.act.slots) <= i {
		m.act.slots = append(m.act.slots, &blockAct{})
	}
	return m.act.slots[i]
}

// ensure allocates the forward state of a B×T micro-batch outside the
// blocks (the blocks' grows as they run).
func (m *model) ensure(B, T int) {
	if m.act != nil && m.B == B && m.T == T {
		return
	}
	c, o := m.Cfg, m.ops
	C, BT := c.Channels, B*T
	a := &acts{}
	a.x0 = m.allocAct(BT * C)
	a.nf, a.nfr = m.allocAct(BT*C), o.Alloc(BT)
	if m.fam.norm == layerNorm {
		a.nfm = o.Alloc(BT)
	}
	a.logits, a.losses = m.allocAct(BT*c.Padded), o.Alloc(BT)
	a.dres, a.dtmp, a.dnf = m.allocAct(BT*C), m.allocAct(BT*C), m.allocAct(BT*C)
	m.act, m.B, m.T = a, B, T
}

// ActivationFloats is the number of values (float32, or bfloat16 with
// bf16 activations) the forward state holds now (it grows to the largest
// subnetwork run so far): the blocks' slots and the gathered weights.
func (m *model) ActivationFloats() int {
	if m.act == nil {
		return 0
	}
	n := 0
	a := m.act
	for _, b := range []kernels.Buf{a.qkv.w, a.qkv.b, a.proj.w, a.proj.b, a.up.w, a.up.b, a.down.w, a.down.b} {
		if b != nil {
			n += b.Len()
		}
	}
	for _, s := range a.slots {
		for _, b := range []kernels.Buf{s.out, s.x1, s.n1, s.n1m, s.n1r, s.qkv, s.atty, s.att, s.n2, s.n2m, s.n2r, s.up, s.act} {
			if b != nil {
				n += b.Len()
			}
		}
	}
	return n
}

// Forward runs the model on ids[B×T] through the subnetwork sel (nil: the
// full model) and, with targets, returns the mean cross-entropy loss. It
// keeps what Backward needs.
func (m *model) Forward(ids, targets []int32, B, T int, sel *Selection) (float32, error) {
	c, o := m.Cfg, m.ops
	if err := checkBatch(c, ids, targets, B, T); err != nil {
		return 0, err
	}
	m.ensure(B, T)
	a := m.act
	m.ids, m.sel, m.targets, m.inputs = ids, sel, nil, map[int]kernels.Buf{}
	C, BT := c.Channels, B*T
	W := m.weights() // what the products read: Params, or their bf16 copy
	if v := m.view; v.positions >= 0 {
		o.Embed(a.x0, m.param(m.params, v.tokens), m.param(m.params, v.positions), ids, B, T, C)
	} else {
		o.GatherRows(a.x0, m.param(m.params, v.tokens), ids, C)
	}
	cur := a.x0
	for i, l := range m.activeLayers(sel) {
		if err := m.interrupted(); err != nil {
			return 0, err
		}
		next, err := m.blockForward(i, l, cur, W)
		if err != nil {
			return 0, err
		}
		cur = next
	}
	m.normForward(a.nf, a.nfm, a.nfr, cur, m.view.norm, BT)
	m.final = cur
	o.MatMul(a.logits, a.nf, m.param(W, m.view.head), BT, c.Padded, C, false, true, 1, 0)
	if targets == nil {
		return 0, o.Err()
	}
	m.targets = targets
	return meanLoss(o, a.losses, a.logits, targets, BT, c)
}

// sampledRows are the index lists of block l's sampled linear layers
// under sel (nil: the whole layer runs).
type sampledRows struct {
	qkvRows, projCols, upRows, downCols []int32
}

// sampled lists them for block view v running heads and neurons: the
// rows and columns unitIdx gives, the same lists the gradient norm and
// AdamW take as what a backward pass wrote.
func (m *model) sampled(v blockView, heads, neurons []int32) sampledRows {
	u, t := Units{heads, neurons}, m.table
	return sampledRows{m.unitIdx(t[v.qkv.w], u), m.unitIdx(t[v.proj.w], u), m.unitIdx(t[v.up.w], u), m.unitIdx(t[v.down.w], u)}
}

// upWidth is the width of the MLP's input projection for ff neurons.
func (m *model) upWidth(ff int) int {
	if m.fam.mlp == swigluMLP {
		return 2 * ff
	}
	return ff
}

// blockForward runs block l in slot i on the residual stream in and
// returns the block's output.
func (m *model) blockForward(i, l int, in, W kernels.Buf) (kernels.Buf, error) {
	c, o, a := m.Cfg, m.ops, m.act
	heads, neurons, nh, nkv, ff, hsc, msc := m.blockShape(m.sel, l)
	if err := m.checkHeads(heads); err != nil {
		return nil, err
	}
	B, T := m.B, m.T
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	D, QKV, U := nh*HS, (nh+2*nkv)*HS, m.upWidth(ff)
	v := m.view.blocks[l]
	s := m.sampled(v, heads, neurons)
	ba := m.slot(i)
	m.inputs[l] = in
	// attention: x1 = in + hsc·attention(norm1(in))·projᵀ + bproj
	n1 := m.normForwardInto(&ba.n1, &ba.n1m, &ba.n1r, in, v.norm1, BT)
	qkv, atty := m.needAct(&ba.qkv, BT*QKV), m.needAct(&ba.atty, BT*D)
	m.linearForward(qkv, n1, W, &a.qkv, v.qkv, s.qkvRows, nil, BT, QKV, C, 1, 0)
	if m.fam.rope {
		theta := float32(c.RopeTheta)
		o.RoPE(qkv, B, T, nh, HS, QKV, 0, theta, false)
		o.RoPE(qkv, B, T, nkv, HS, QKV, nh*HS, theta, false)
	}
	o.Attention(atty, m.need(&ba.att, o.AttentionState(B, nh, T)), qkv, B, T, nh, nkv, HS)
	x1 := m.needAct(&ba.x1, BT*C)
	o.Copy(x1, in)
	m.linearForward(x1, atty, W, &a.proj, v.proj, nil, s.projCols, BT, C, D, hsc, 1)
	// MLP: out = x1 + msc·act(norm2(x1)·upᵀ + bup)·downᵀ + bdown
	n2 := m.normForwardInto(&ba.n2, &ba.n2m, &ba.n2r, x1, v.norm2, BT)
	up, act := m.needAct(&ba.up, BT*U), m.needAct(&ba.act, BT*ff)
	m.linearForward(up, n2, W, &a.up, v.up, s.upRows, nil, BT, U, C, 1, 0)
	if m.fam.mlp == swigluMLP {
		o.SwiGLU(act, up, BT, ff)
	} else {
		o.GELU(act, up)
	}
	out := m.needAct(&ba.out, BT*C)
	o.Copy(out, x1)
	m.linearForward(out, act, W, &a.down, v.down, nil, s.downCols, BT, C, ff, msc, 1)
	return out, nil
}

// Backward computes the gradients of the last Forward's mean loss and adds
// them to the gradients (scaled by gradScale, e.g. 1/K over K accumulated
// micro-batches). Unsampled heads and neurons of a running block get no
// gradient (zero); the parameters of a skipped block are not touched.
func (m *model) Backward(gradScale float32) error {
	if m.targets == nil {
		return fmt.Errorf("train: backward without a forward pass with targets")
	}
	m.written(m.sel)
	c, o, a := m.Cfg, m.ops, m.act
	B, T := m.B, m.T
	C, BT := c.Channels, B*T
	// classifier: dlogits = scale·(softmax − onehot)/BT, reusing logits
	o.CrossEntropy(a.losses, a.logits, a.logits, m.targets, BT, c.Vocab, c.Padded, gradScale/float32(BT))
	W := m.weights()
	o.MatMul(a.dnf, a.logits, m.param(W, m.view.head), BT, C, c.Padded, false, false, 1, 0)
	o.MatMul(m.param(m.grads, m.view.head), a.logits, a.nf, c.Padded, C, BT, true, false, 1, 1)
	dres := a.dres
	o.Fill(dres, 0)
	m.normBackward(dres, a.dnf, m.final, a.nfm, a.nfr, m.view.norm, BT)
	layers := m.activeLayers(m.sel)
	for i := len(layers) - 1; i >= 0; i-- {
		if err := m.interrupted(); err != nil {
			return err
		}
		m.blockBackward(i, layers[i], W)
		if m.blockDone != nil {
			m.blockDone(layers[i])
		}
	}
	if v := m.view; v.positions >= 0 {
		o.EmbedBackward(m.param(m.grads, v.tokens), m.param(m.grads, v.positions), dres, m.ids, B, T, C)
	} else {
		o.ScatterAddRows(m.param(m.grads, v.tokens), dres, m.ids, C)
	}
	return o.Err()
}

// blockBackward takes the gradient of block l's output (slot i) in dres
// back to its input, adding the gradients of its parameters.
func (m *model) blockBackward(i, l int, W kernels.Buf) {
	c, o, a := m.Cfg, m.ops, m.act
	B, T := m.B, m.T
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	heads, neurons, nh, nkv, ff, hsc, msc := m.blockShape(m.sel, l)
	D, QKV, U := nh*HS, (nh+2*nkv)*HS, m.upWidth(ff)
	v := m.view.blocks[l]
	s := m.sampled(v, heads, neurons)
	ba := m.slot(i)
	dres := a.dres
	// MLP
	up, act := o.Slice(ba.up, 0, BT*U), o.Slice(ba.act, 0, BT*ff)
	dup, dact := m.needAct(&a.dup, BT*U), m.needAct(&a.dact, BT*ff)
	m.linearBackward(dact, dres, act, W, &a.down, v.down, nil, s.downCols, BT, C, ff, msc)
	o.Fill(dup, 0)
	if m.fam.mlp == swigluMLP {
		o.SwiGLUBackward(dup, up, dact, BT, ff)
	} else {
		o.GELUBackward(dup, up, dact)
	}
	m.linearBackward(a.dtmp, dup, o.Slice(ba.n2, 0, BT*C), W, &a.up, v.up, s.upRows, nil, BT, U, C, 1)
	mean, rstd := m.stats(ba.n2m, ba.n2r, BT)
	m.normBackward(dres, a.dtmp, o.Slice(ba.x1, 0, BT*C), mean, rstd, v.norm2, BT)
	// attention
	atty, datty := o.Slice(ba.atty, 0, BT*D), m.needAct(&a.datty, BT*D)
	qkv, dqkv := o.Slice(ba.qkv, 0, BT*QKV), m.needAct(&a.dqkv, BT*QKV)
	m.linearBackward(datty, dres, atty, W, &a.proj, v.proj, nil, s.projCols, BT, C, D, hsc)
	o.Fill(dqkv, 0)
	o.AttentionBackward(dqkv, datty, atty, qkv, o.Slice(ba.att, 0, o.AttentionState(B, nh, T)), B, T, nh, nkv, HS)
	if m.fam.rope { // gradients of the rotated q and k back through the rotation
		theta := float32(c.RopeTheta)
		o.RoPE(dqkv, B, T, nh, HS, QKV, 0, theta, true)
		o.RoPE(dqkv, B, T, nkv, HS, QKV, nh*HS, theta, true)
	}
	m.linearBackward(a.dtmp, dqkv, o.Slice(ba.n1, 0, BT*C), W, &a.qkv, v.qkv, s.qkvRows, nil, BT, QKV, C, 1)
	mean, rstd = m.stats(ba.n1m, ba.n1r, BT)
	m.normBackward(dres, a.dtmp, m.inputs[l], mean, rstd, v.norm1, BT)
}

// normForwardInto normalises x into the block buffers *y, *mean (LayerNorm
// only) and *rstd, sized to BT rows, and returns the output.
func (m *model) normForwardInto(y, mean, rstd *kernels.Buf, x kernels.Buf, nv normView, BT int) kernels.Buf {
	out := m.needAct(y, BT*m.Cfg.Channels)
	var mu kernels.Buf
	if m.fam.norm == layerNorm {
		mu = m.need(mean, BT)
	}
	m.normForward(out, mu, m.need(rstd, BT), x, nv, BT)
	return out
}

// normForward normalises x [BT × C] into y with the norm's parameters,
// keeping the rows' means (LayerNorm) and reciprocal deviations.
func (m *model) normForward(y, mean, rstd, x kernels.Buf, nv normView, BT int) {
	C := m.Cfg.Channels
	if m.fam.norm == rmsNorm {
		m.ops.RMSNorm(y, rstd, x, m.param(m.params, nv.w), BT, C, float32(m.Cfg.NormEps))
		return
	}
	m.ops.LayerNorm(y, mean, rstd, x, m.param(m.params, nv.w), m.param(m.params, nv.b), BT, C)
}

// stats are the first BT rows of a block's norm statistics, which its
// slot may hold for more: the means (LayerNorm; nil otherwise) and the
// reciprocal deviations.
func (m *model) stats(mean, rstd kernels.Buf, BT int) (kernels.Buf, kernels.Buf) {
	if m.fam.norm == layerNorm {
		mean = m.ops.Slice(mean, 0, BT)
	}
	return mean, m.ops.Slice(rstd, 0, BT)
}

// normBackward adds the gradient of a norm's input x to dx and its
// parameters' to theirs, from dy and the statistics the forward pass kept
// (mean, LayerNorm only, and rstd [BT]).
func (m *model) normBackward(dx, dy, x, mean, rstd kernels.Buf, nv normView, BT int) {
	o, C := m.ops, m.Cfg.Channels
	if m.fam.norm == rmsNorm {
		o.RMSNormBackward(dx, m.param(m.grads, nv.w), dy, x, m.param(m.params, nv.w), rstd, BT, C)
		return
	}
	o.LayerNormBackward(dx, m.param(m.grads, nv.w), m.param(m.grads, nv.b), dy, x, m.param(m.params, nv.w), mean, rstd, BT, C)
}

// sampledMatMul sets c = alpha·op(a)·op(wₛ) + beta·c, where wₛ is the
// part of weight e (of the buffer W) a step runs (its listed rows or
// columns in PyTorch's layout, or the whole tensor), op(wₛ) k×n: read
// where it lies by a backend that can (kernels.SampledMatMuler), else
// gathered into *dst. A weight held transposed (Param.T) is op's other
// side of what it holds, its columns the rows it holds.
func (m *model) sampledMatMul(c, a, W kernels.Buf, dst *kernels.Buf, e int, rows, cols []int32, rm, n, k int, tb bool, alpha, beta float32) {
	w, sh := m.param(W, e), m.table[e].Held()
	if m.table[e].T {
		rows, cols, tb = cols, rows, !tb
	}
	if rows == nil && cols == nil {
		m.ops.MatMul(c, a, w, rm, n, k, false, tb, alpha, beta)
		return
	}
	if sm, ok := m.ops.(kernels.SampledMatMuler); ok && sm.MatMulSampled(c, a, w, rm, n, k, false, tb, alpha, beta, rows, cols, sh[1]) {
		return
	}
	var g kernels.Buf
	if rows != nil {
		g = m.needAct(dst, len(rows)*sh[1])
		m.ops.GatherRows(g, w, rows, sh[1])
	} else {
		g = m.needAct(dst, sh[0]*len(cols))
		m.ops.GatherCols(g, w, sh[0], sh[1], cols)
	}
	m.ops.MatMul(c, a, g, rm, n, k, false, tb, alpha, beta)
}

// linearForward computes y = α·x·wᵀ + β·y, then adds the bias (unscaled),
// over the part of the linear layer lv that runs: the output rows or the
// input columns listed (nil: all), gathered into g. x is [BT × in], y
// [BT × out] (in and out counted after sampling).
func (m *model) linearForward(y, x, W kernels.Buf, g *gathered, lv linearView, rows, cols []int32, BT, out, in int, alpha, beta float32) {
	o := m.ops
	m.sampledMatMul(y, x, W, &g.w, lv.w, rows, cols, BT, out, in, true, alpha, beta)
	if lv.b < 0 {
		return
	}
	b := m.param(m.params, lv.b)
	if rows != nil {
		gb := m.need(&g.b, len(rows))
		o.GatherRows(gb, b, rows, 1)
		b = gb
	}
	o.AddBias(y, b, BT, out)
}

// linearBackward is linearForward's backward pass from dy [BT × out]: it
// writes dx [BT × in] and adds the weight's and bias's gradients into the
// rows or columns that ran.
func (m *model) linearBackward(dx, dy, x, W kernels.Buf, g *gathered, lv linearView, rows, cols []int32, BT, out, in int, alpha float32) {
	o := m.ops
	if lv.b >= 0 {
		db := m.param(m.grads, lv.b)
		if rows == nil {
			o.BiasGrad(db, dy, BT, out)
		} else {
			gb := m.need(&m.act.gb, out)
			o.Fill(gb, 0)
			o.BiasGrad(gb, dy, BT, out)
			o.ScatterAddRows(db, gb, rows, 1)
		}
	}
	m.sampledMatMul(dx, dy, W, &g.w, lv.w, rows, cols, BT, in, out, false, alpha, 0)
	dw := m.param(m.grads, lv.w)
	if e := m.table[lv.w]; e.T { // held [in × out]: add xᵀ·dy into the rows of the listed columns
		m.weightGrad(dw, x, dy, in, out, BT, alpha, &m.act.gw, cols, rows, e.Held()[1])
		return
	}
	m.weightGrad(dw, dy, x, out, in, BT, alpha, &m.act.gw, rows, cols, m.table[lv.w].Shape[1])
}
