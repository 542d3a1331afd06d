package train

import (
	"fmt"

	"github.com/estkit/estkit/kernels"
)

// Per-layer parameter indices within a Llama block's run of the table.
const (
	lNorm1 = iota
	lQKV
	lO
	lNorm2
	lGateUp
	lDown
	perLlamaLayer
)

// llamaTable is Llama's parameter table: the token embedding, then each
// block's six tensors, the final norm and the (untied) LM head. The q, k
// and v projections are one tensor (queries of all heads, then keys, then
// values), as are the gate and up projections (gate rows, then up rows);
// the Hugging Face import and export split them. Weights are normal with
// std 0.02 (Hugging Face's initializer_range), norm weights one; there are
// no biases.
func llamaTable(cfg ModelConfig) []Param {
	C, L, NH, NKV, FF := cfg.Channels, cfg.Layers, cfg.Heads, cfg.KV(), cfg.FF
	HS := C / NH
	const std = 0.02
	var t table
	t.add("model.embed_tokens.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[0].Vocab = true
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		t.add(p+"input_layernorm.weight", l, false, 0, true, unitNone, C)
		t.add(p+"self_attn.qkv_proj.weight", l, true, std, false, unitQKVRows, (NH+2*NKV)*HS, C)
		t.add(p+"self_attn.o_proj.weight", l, true, std, false, unitHeadCols, C, NH*HS)
		t.add(p+"post_attention_layernorm.weight", l, false, 0, true, unitNone, C)
		t.add(p+"mlp.gate_up_proj.weight", l, true, std, false, unitGateUpRows, 2*FF, C)
		t.add(p+"mlp.down_proj.weight", l, true, std, false, unitNeuronCols, C, FF)
	}
	t.add("model.norm.weight", -1, false, 0, true, unitNone, C)
	t.add("lm_head.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[len(t)-1].Vocab = true
	return t
}

// Llama is a Llama model (RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU MLP, untied LM head) with its parameters, gradients
// and activations on a kernels backend.
type Llama struct {
	core

	B, T    int
	act     *llamaActs
	ids     []int32
	targets []int32
	sel     *Selection
	inputs  map[int]kernels.Buf // residual stream entering each active block
	final   kernels.Buf         // residual stream after the last active block
}

// llamaActs hold one micro-batch's forward state, a slot per running
// block (as GPT-2's activations), backward scratch, and one block's
// gathered weights shared by all blocks.
type llamaActs struct {
	x0, nf, nfr, logits, losses kernels.Buf
	slots                       []*llamaBlock
	dres, dtmp, dnf             kernels.Buf
	dqkv, datty, dh, dact, gw   kernels.Buf
	wqkv, wo, wgu, wdown        kernels.Buf
}

// llamaBlock is one running block's state: its output and the values its
// backward pass needs.
type llamaBlock struct {
	out, x1, n1, n1r, qkv, atty, att, n2, n2r, h, act kernels.Buf
}

// NewLlama allocates the model on ops with params (len NumParams).
func NewLlama(ops kernels.Ops, cfg ModelConfig, params []float32) (*Llama, error) {
	if !cfg.IsLlama() {
		return nil, fmt.Errorf("train: arch %q is not a Llama shape", cfg.Arch)
	}
	if err := checkParams(cfg, params); err != nil {
		return nil, err
	}
	return &Llama{core: newCore(ops, cfg, params)}, nil
}

// layerParam is parameter k of block l.
func (g *Llama) layerParam(buf kernels.Buf, l, k int) kernels.Buf {
	return g.param(buf, 1+l*perLlamaLayer+k)
}

func (g *Llama) slot(i int) *llamaBlock {
	for len(g.act.slots) <= i {
		g.act.slots = append(g.act.slots, &llamaBlock{})
	}
	return g.act.slots[i]
}

func (g *Llama) ensure(B, T int) {
	if g.act != nil && g.B == B && g.T == T {
		return
	}
	c, o := g.Cfg, g.ops
	C, BT := c.Channels, B*T
	a := &llamaActs{}
	a.x0 = g.allocAct(BT * C)
	a.nf, a.nfr = g.allocAct(BT*C), o.Alloc(BT)
	a.logits, a.losses = g.allocAct(BT*c.Padded), o.Alloc(BT)
	a.dres, a.dtmp, a.dnf = g.allocAct(BT*C), g.allocAct(BT*C), g.allocAct(BT*C)
	g.act, g.B, g.T = a, B, T
}

// SetBF16Activations stores the activations in bfloat16 (Model).
func (g *Llama) SetBF16Activations(on bool) error {
	g.act = nil
	return g.setBF16(on)
}

// Forward runs the model on ids[B×T] and, with targets, returns the mean
// cross-entropy loss. It keeps what Backward needs.
func (g *Llama) Forward(ids, targets []int32, B, T int, sel *Selection) (float32, error) {
	c, o := g.Cfg, g.ops
	if err := checkBatch(c, ids, targets, B, T); err != nil {
		return 0, err
	}
	g.ensure(B, T)
	a := g.act
	g.ids, g.sel, g.targets, g.inputs = ids, sel, nil, map[int]kernels.Buf{}
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	NH, NKV, FF := c.Heads, c.KV(), c.FF
	theta, eps := float32(c.RopeTheta), float32(c.NormEps)
	Wt := g.weights() // what the products read: Params, or their bf16 copy
	o.GatherRows(a.x0, g.param(g.Params, 0), ids, C)
	cur := a.x0
	for i, l := range g.activeLayers(sel) {
		heads, neurons, nh, nkv, ff, hsc, msc := g.blockShape(sel, l)
		if err := g.checkHeads(heads); err != nil {
			return 0, err
		}
		P := func(k int) kernels.Buf { return g.layerParam(g.Params, l, k) }
		PW := func(k int) kernels.Buf { return g.layerParam(Wt, l, k) }
		ba := g.slot(i)
		g.inputs[l] = cur
		D, W := nh*HS, (nh+2*nkv)*HS
		// attention
		n1, n1r := g.needAct(&ba.n1, BT*C), g.need(&ba.n1r, BT)
		o.RMSNorm(n1, n1r, cur, P(lNorm1), BT, C, eps)
		wqkv, wo := PW(lQKV), PW(lO)
		if heads != nil {
			wqkv, wo = g.needAct(&a.wqkv, W*C), g.needAct(&a.wo, C*D)
			o.GatherRows(wqkv, PW(lQKV), qkvRows(heads, NH, NKV, HS), C)
			o.GatherCols(wo, PW(lO), C, NH*HS, headCols(heads, HS))
		}
		qkv, atty := g.needAct(&ba.qkv, BT*W), g.needAct(&ba.atty, BT*D)
		o.MatMul(qkv, n1, wqkv, BT, W, C, false, true, 1, 0)
		o.RoPE(qkv, B, T, nh, HS, W, 0, theta, false)
		o.RoPE(qkv, B, T, nkv, HS, W, nh*HS, theta, false)
		o.Attention(atty, g.need(&ba.att, o.AttentionState(B, nh, T)), qkv, B, T, nh, nkv, HS)
		x1 := g.needAct(&ba.x1, BT*C)
		o.Copy(x1, cur)
		o.MatMul(x1, atty, wo, BT, C, D, false, true, hsc, 1)
		// MLP
		n2, n2r := g.needAct(&ba.n2, BT*C), g.need(&ba.n2r, BT)
		o.RMSNorm(n2, n2r, x1, P(lNorm2), BT, C, eps)
		wgu, wdown := PW(lGateUp), PW(lDown)
		if neurons != nil {
			wgu, wdown = g.needAct(&a.wgu, 2*ff*C), g.needAct(&a.wdown, C*ff)
			o.GatherRows(wgu, PW(lGateUp), gateUpRows(neurons, FF), C)
			o.GatherCols(wdown, PW(lDown), C, FF, neurons)
		}
		h, act := g.needAct(&ba.h, BT*2*ff), g.needAct(&ba.act, BT*ff)
		o.MatMul(h, n2, wgu, BT, 2*ff, C, false, true, 1, 0)
		o.SwiGLU(act, h, BT, ff)
		next := g.needAct(&ba.out, BT*C)
		o.Copy(next, x1)
		o.MatMul(next, act, wdown, BT, C, ff, false, true, msc, 1)
		cur = next
	}
	last := len(g.table) - 2
	o.RMSNorm(a.nf, a.nfr, cur, g.param(g.Params, last), BT, C, eps)
	g.final = cur
	o.MatMul(a.logits, a.nf, g.param(Wt, last+1), BT, c.Padded, C, false, true, 1, 0)
	if targets == nil {
		return 0, o.Err()
	}
	g.targets = targets
	return meanLoss(o, a.losses, a.logits, targets, BT, c)
}

// Backward computes the gradients of the last Forward's mean loss and adds
// them to Grads (scaled by gradScale). Unsampled heads and neurons of a
// running block get no gradient (zero); a skipped block's parameters are
// not touched.
func (g *Llama) Backward(gradScale float32) error {
	if g.targets == nil {
		return fmt.Errorf("train: backward without a forward pass with targets")
	}
	c, o, a := g.Cfg, g.ops, g.act
	B, T := g.B, g.T
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	NH, NKV, FF := c.Heads, c.KV(), c.FF
	theta := float32(c.RopeTheta)
	sel := g.sel
	last := len(g.table) - 2
	// classifier: dlogits = scale·(softmax − onehot)/BT, reusing logits
	o.CrossEntropy(a.losses, a.logits, a.logits, g.targets, BT, c.Vocab, c.Padded, gradScale/float32(BT))
	Wt := g.weights()
	head := g.param(Wt, last+1)
	o.MatMul(a.dnf, a.logits, head, BT, C, c.Padded, false, false, 1, 0)
	o.MatMul(g.param(g.Grads, last+1), a.logits, a.nf, c.Padded, C, BT, true, false, 1, 1)
	dres := a.dres
	o.Fill(dres, 0)
	o.RMSNormBackward(dres, g.param(g.Grads, last), a.dnf, g.final, g.param(g.Params, last), a.nfr, BT, C)
	layers := g.activeLayers(sel)
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		ba := g.slot(i)
		heads, neurons, nh, nkv, ff, hsc, msc := g.blockShape(sel, l)
		P := func(k int) kernels.Buf { return g.layerParam(g.Params, l, k) }
		PW := func(k int) kernels.Buf { return g.layerParam(Wt, l, k) }
		G := func(k int) kernels.Buf { return g.layerParam(g.Grads, l, k) }
		D, W := nh*HS, (nh+2*nkv)*HS
		// MLP: out = x1 + msc·act·wdownᵀ
		wgu, wdown := PW(lGateUp), PW(lDown)
		if neurons != nil {
			wgu, wdown = g.needAct(&a.wgu, 2*ff*C), g.needAct(&a.wdown, C*ff)
			o.GatherRows(wgu, PW(lGateUp), gateUpRows(neurons, FF), C)
			o.GatherCols(wdown, PW(lDown), C, FF, neurons)
		}
		h, act := o.Slice(ba.h, 0, BT*2*ff), o.Slice(ba.act, 0, BT*ff)
		dact, dh := g.needAct(&a.dact, BT*ff), g.needAct(&a.dh, BT*2*ff)
		o.MatMul(dact, dres, wdown, BT, ff, C, false, false, msc, 0)
		g.weightGrad(G(lDown), dres, act, C, ff, BT, msc, &a.gw, nil, neurons, FF)
		o.Fill(dh, 0)
		o.SwiGLUBackward(dh, h, dact, BT, ff)
		n2 := o.Slice(ba.n2, 0, BT*C)
		var guRows []int32
		if neurons != nil {
			guRows = gateUpRows(neurons, FF)
		}
		g.weightGrad(G(lGateUp), dh, n2, 2*ff, C, BT, 1, &a.gw, guRows, nil, 0)
		o.MatMul(a.dtmp, dh, wgu, BT, C, 2*ff, false, false, 1, 0)
		o.RMSNormBackward(dres, G(lNorm2), a.dtmp, o.Slice(ba.x1, 0, BT*C), P(lNorm2), o.Slice(ba.n2r, 0, BT), BT, C)
		// attention: x1 = in + hsc·atty·woᵀ
		wqkv, wo := PW(lQKV), PW(lO)
		var rows []int32
		if heads != nil {
			rows = qkvRows(heads, NH, NKV, HS)
			wqkv, wo = g.needAct(&a.wqkv, W*C), g.needAct(&a.wo, C*D)
			o.GatherRows(wqkv, PW(lQKV), rows, C)
			o.GatherCols(wo, PW(lO), C, NH*HS, headCols(heads, HS))
		}
		atty, datty := o.Slice(ba.atty, 0, BT*D), g.needAct(&a.datty, BT*D)
		qkv, dqkv := o.Slice(ba.qkv, 0, BT*W), g.needAct(&a.dqkv, BT*W)
		o.MatMul(datty, dres, wo, BT, D, C, false, false, hsc, 0)
		var cols []int32
		if heads != nil {
			cols = headCols(heads, HS)
		}
		g.weightGrad(G(lO), dres, atty, C, D, BT, hsc, &a.gw, nil, cols, NH*HS)
		o.Fill(dqkv, 0)
		o.AttentionBackward(dqkv, datty, atty, qkv, o.Slice(ba.att, 0, o.AttentionState(B, nh, T)), B, T, nh, nkv, HS)
		// gradients of the rotated q and k back through the rotation
		o.RoPE(dqkv, B, T, nh, HS, W, 0, theta, true)
		o.RoPE(dqkv, B, T, nkv, HS, W, nh*HS, theta, true)
		n1 := o.Slice(ba.n1, 0, BT*C)
		g.weightGrad(G(lQKV), dqkv, n1, W, C, BT, 1, &a.gw, rows, nil, 0)
		o.MatMul(a.dtmp, dqkv, wqkv, BT, C, W, false, false, 1, 0)
		o.RMSNormBackward(dres, G(lNorm1), a.dtmp, g.inputs[l], P(lNorm1), o.Slice(ba.n1r, 0, BT), BT, C)
	}
	o.ScatterAddRows(g.param(g.Grads, 0), dres, g.ids, C)
	return o.Err()
}

// ActivationFloats is the number of values (float32, or bfloat16 with
// bf16 activations) the forward state holds
// now (it grows to the largest subnetwork run so far).
func (g *Llama) ActivationFloats() int {
	if g.act == nil {
		return 0
	}
	n := 0
	a := g.act
	for _, b := range []kernels.Buf{a.wqkv, a.wo, a.wgu, a.wdown} {
		if b != nil {
			n += b.Len()
		}
	}
	for _, s := range a.slots {
		for _, b := range []kernels.Buf{s.out, s.x1, s.n1, s.n1r, s.qkv, s.atty, s.att, s.n2, s.n2r, s.h, s.act} {
			if b != nil {
				n += b.Len()
			}
		}
	}
	return n
}
