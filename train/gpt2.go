package train

import (
	"fmt"
	"math"

	"github.com/estkit/estkit/kernels"
)

// Per-layer parameter indices within a block's run of the table.
const (
	pLn1W = iota
	pLn1B
	pQKVW
	pQKVB
	pProjW
	pProjB
	pLn2W
	pLn2B
	pFcW
	pFcB
	pFpW
	pFpB
	perLayer
)

// gpt2Table is GPT-2's parameter table: wte, wpe, then each block's
// twelve tensors, then ln_f. Weights are normal (std 0.02, the residual
// projections 0.02/√(2L)), biases zero, LayerNorm weights one.
func gpt2Table(cfg ModelConfig) []Param {
	C, L := cfg.Channels, cfg.Layers
	std := 0.02
	proj := 0.02 / math.Sqrt(2*float64(L))
	var t table
	t.add("wte.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[0].Vocab = true
	t.add("wpe.weight", -1, true, std, false, unitNone, cfg.MaxT, C)
	for l := 0; l < L; l++ {
		h := fmt.Sprintf("h.%d.", l)
		t.add(h+"ln_1.weight", l, false, 0, true, unitNone, C)
		t.add(h+"ln_1.bias", l, false, 0, false, unitNone, C)
		t.add(h+"attn.c_attn.weight", l, true, std, false, unitQKVRows, 3*C, C)
		t.add(h+"attn.c_attn.bias", l, false, 0, false, unitQKVRows, 3*C)
		t.add(h+"attn.c_proj.weight", l, true, proj, false, unitHeadCols, C, C)
		t.add(h+"attn.c_proj.bias", l, false, 0, false, unitNone, C)
		t.add(h+"ln_2.weight", l, false, 0, true, unitNone, C)
		t.add(h+"ln_2.bias", l, false, 0, false, unitNone, C)
		t.add(h+"mlp.c_fc.weight", l, true, std, false, unitNeuronRows, 4*C, C)
		t.add(h+"mlp.c_fc.bias", l, false, 0, false, unitNeuronRows, 4*C)
		t.add(h+"mlp.c_proj.weight", l, true, proj, false, unitNeuronCols, C, 4*C)
		t.add(h+"mlp.c_proj.bias", l, false, 0, false, unitNone, C)
	}
	t.add("ln_f.weight", -1, false, 0, true, unitNone, C)
	t.add("ln_f.bias", -1, false, 0, false, unitNone, C)
	return t
}

// GPT2 is a GPT-2 model with its parameters, gradients and activations
// on a kernels backend.
type GPT2 struct {
	core

	B, T    int
	act     *activations
	ids     []int32
	targets []int32
	sel     *Selection
	inputs  map[int]kernels.Buf // residual stream entering each active block
	final   kernels.Buf         // residual stream after the last active block
}

// NewGPT2 allocates the model on ops with params (len NumParams).
func NewGPT2(ops kernels.Ops, cfg ModelConfig, params []float32) (*GPT2, error) {
	if cfg.IsLlama() {
		return nil, fmt.Errorf("train: %s is a Llama shape, not GPT-2's", cfg.Arch)
	}
	if err := checkParams(cfg, params); err != nil {
		return nil, err
	}
	return &GPT2{core: newCore(ops, cfg, params)}, nil
}

// layerParam is parameter k of block l.
func (g *GPT2) layerParam(buf kernels.Buf, l, k int) kernels.Buf { return g.param(buf, 2+l*perLayer+k) }

// activations hold one micro-batch's forward state. Each running block
// takes the next slot, and a slot's buffers are sized to what its block
// computes, growing when a later step needs more: a stage that runs half
// the blocks at half width holds about a quarter of the full model's block
// activations.
type activations struct {
	x0     kernels.Buf // embeddings
	slots  []*blockAct
	lnf    kernels.Buf
	lnfm   kernels.Buf
	lnfr   kernels.Buf
	logits kernels.Buf
	losses kernels.Buf
	// scratch for the backward pass, sized to the largest need
	dres, dtmp, dlnf        kernels.Buf
	dqkv, datty, dfch, dfcg kernels.Buf
	gw, gb                  kernels.Buf
	// one block's gathered weights, shared by all blocks: gathered in the
	// forward pass and again in the backward pass (a copy of the sampled
	// weights, about 1% of a step) rather than held per block, so that a
	// sampled step holds less than a full one
	wqkv, bqkv, wproj, wfc, bfc, wfp kernels.Buf
}

// blockAct is one running block's state: its output and the values its
// backward pass needs.
type blockAct struct {
	out, x1, ln1, ln1m, ln1r, qkv, atty, att, ln2, ln2m, ln2r, fch, fcg kernels.Buf
}

func (g *GPT2) slot(i int) *blockAct {
	for len(g.act.slots) <= i {
		g.act.slots = append(g.act.slots, &blockAct{})
	}
	return g.act.slots[i]
}

func (g *GPT2) ensure(B, T int) {
	if g.act != nil && g.B == B && g.T == T {
		return
	}
	c, o := g.Cfg, g.ops
	C, BT := c.Channels, B*T
	a := &activations{}
	a.x0 = g.allocAct(BT * C)
	a.lnf, a.lnfm, a.lnfr = g.allocAct(BT*C), o.Alloc(BT), o.Alloc(BT)
	a.logits, a.losses = g.allocAct(BT*c.Padded), o.Alloc(BT)
	a.dres, a.dtmp, a.dlnf = g.allocAct(BT*C), g.allocAct(BT*C), g.allocAct(BT*C)
	g.act, g.B, g.T = a, B, T
}

// SetBF16Activations stores the activations in bfloat16 (Model).
func (g *GPT2) SetBF16Activations(on bool) error {
	g.act = nil
	return g.setBF16(on)
}

// Forward runs the model on ids[B×T] and, with targets, returns the mean
// cross-entropy loss. It keeps what Backward needs.
func (g *GPT2) Forward(ids, targets []int32, B, T int, sel *Selection) (float32, error) {
	c, o := g.Cfg, g.ops
	if err := checkBatch(c, ids, targets, B, T); err != nil {
		return 0, err
	}
	g.ensure(B, T)
	a := g.act
	g.ids, g.sel, g.targets, g.inputs = ids, sel, nil, map[int]kernels.Buf{}
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	W := g.weights() // what the products read: Params, or their bf16 copy
	o.Embed(a.x0, g.param(g.Params, 0), g.param(g.Params, 1), ids, B, T, C)
	cur := a.x0
	for i, l := range g.activeLayers(sel) {
		heads, neurons, nh, _, ff, hsc, msc := g.blockShape(sel, l)
		P := func(k int) kernels.Buf { return g.layerParam(g.Params, l, k) }
		PW := func(k int) kernels.Buf { return g.layerParam(W, l, k) }
		ba := g.slot(i)
		g.inputs[l] = cur
		D := nh * HS
		// attention
		ln1, ln1m, ln1r := g.needAct(&ba.ln1, BT*C), g.need(&ba.ln1m, BT), g.need(&ba.ln1r, BT)
		o.LayerNorm(ln1, ln1m, ln1r, cur, P(pLn1W), P(pLn1B), BT, C)
		wqkv, bqkv, wproj := PW(pQKVW), P(pQKVB), PW(pProjW)
		if heads != nil {
			rows := qkvRows(heads, c.Heads, c.Heads, HS)
			wqkv, bqkv = g.needAct(&a.wqkv, len(rows)*C), g.need(&a.bqkv, len(rows))
			o.GatherRows(wqkv, PW(pQKVW), rows, C)
			o.GatherRows(bqkv, P(pQKVB), rows, 1)
			wproj = g.needAct(&a.wproj, C*D)
			o.GatherCols(wproj, PW(pProjW), C, C, headCols(heads, HS))
		}
		qkv, atty := g.needAct(&ba.qkv, BT*3*D), g.needAct(&ba.atty, BT*D)
		o.MatMul(qkv, ln1, wqkv, BT, 3*D, C, false, true, 1, 0)
		o.AddBias(qkv, bqkv, BT, 3*D)
		o.Attention(atty, g.need(&ba.att, o.AttentionState(B, nh, T)), qkv, B, T, nh, nh, HS)
		x1 := g.needAct(&ba.x1, BT*C)
		o.Copy(x1, cur)
		o.MatMul(x1, atty, wproj, BT, C, D, false, true, hsc, 1)
		o.AddBias(x1, P(pProjB), BT, C)
		// MLP
		ln2, ln2m, ln2r := g.needAct(&ba.ln2, BT*C), g.need(&ba.ln2m, BT), g.need(&ba.ln2r, BT)
		o.LayerNorm(ln2, ln2m, ln2r, x1, P(pLn2W), P(pLn2B), BT, C)
		wfc, bfc, wfp := PW(pFcW), P(pFcB), PW(pFpW)
		if neurons != nil {
			wfc, bfc = g.needAct(&a.wfc, ff*C), g.need(&a.bfc, ff)
			o.GatherRows(wfc, PW(pFcW), neurons, C)
			o.GatherRows(bfc, P(pFcB), neurons, 1)
			wfp = g.needAct(&a.wfp, C*ff)
			o.GatherCols(wfp, PW(pFpW), C, 4*C, neurons)
		}
		fch, fcg := g.needAct(&ba.fch, BT*ff), g.needAct(&ba.fcg, BT*ff)
		o.MatMul(fch, ln2, wfc, BT, ff, C, false, true, 1, 0)
		o.AddBias(fch, bfc, BT, ff)
		o.GELU(fcg, fch)
		next := g.needAct(&ba.out, BT*C)
		o.Copy(next, x1)
		o.MatMul(next, fcg, wfp, BT, C, ff, false, true, msc, 1)
		o.AddBias(next, P(pFpB), BT, C)
		cur = next
	}
	last := len(g.table) - 2
	o.LayerNorm(a.lnf, a.lnfm, a.lnfr, cur, g.param(g.Params, last), g.param(g.Params, last+1), BT, C)
	g.final = cur
	o.MatMul(a.logits, a.lnf, g.param(W, 0), BT, c.Padded, C, false, true, 1, 0)
	if targets == nil {
		return 0, o.Err()
	}
	g.targets = targets
	return meanLoss(o, a.losses, a.logits, targets, BT, c)
}

// Backward computes the gradients of the last Forward's mean loss and adds
// them to Grads (scaled by gradScale, e.g. 1/K over K accumulated
// micro-batches). Unsampled heads and neurons of a running block get no
// gradient (zero); the parameters of a skipped block are not touched.
func (g *GPT2) Backward(gradScale float32) error {
	if g.targets == nil {
		return fmt.Errorf("train: backward without a forward pass with targets")
	}
	c, o, a := g.Cfg, g.ops, g.act
	B, T := g.B, g.T
	C, BT, HS := c.Channels, B*T, c.Channels/c.Heads
	sel := g.sel
	// classifier: dlogits = scale·(softmax − onehot)/BT, reusing logits
	o.CrossEntropy(a.losses, a.logits, a.logits, g.targets, BT, c.Vocab, c.Padded, gradScale/float32(BT))
	W := g.weights()
	wte, dwte := g.param(W, 0), g.param(g.Grads, 0)
	o.Fill(a.dlnf, 0)
	o.MatMul(a.dlnf, a.logits, wte, BT, C, c.Padded, false, false, 1, 0)
	o.MatMul(dwte, a.logits, a.lnf, c.Padded, C, BT, true, false, 1, 1)
	last := len(g.table) - 2
	dres := a.dres
	o.Fill(dres, 0)
	o.LayerNormBackward(dres, g.param(g.Grads, last), g.param(g.Grads, last+1), a.dlnf, g.final, g.param(g.Params, last), a.lnfm, a.lnfr, BT, C)
	layers := g.activeLayers(sel)
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		ba := g.slot(i)
		heads, neurons, nh, _, ff, hsc, msc := g.blockShape(sel, l)
		P := func(k int) kernels.Buf { return g.layerParam(g.Params, l, k) }
		PW := func(k int) kernels.Buf { return g.layerParam(W, l, k) }
		G := func(k int) kernels.Buf { return g.layerParam(g.Grads, l, k) }
		D := nh * HS
		// MLP: out = x1 + msc·fcg·wfpᵀ + bfp
		wfc, wfp := PW(pFcW), PW(pFpW)
		if neurons != nil {
			wfc, wfp = g.needAct(&a.wfc, ff*C), g.needAct(&a.wfp, C*ff)
			o.GatherRows(wfc, PW(pFcW), neurons, C)
			o.GatherCols(wfp, PW(pFpW), C, 4*C, neurons)
		}
		fch, fcg := o.Slice(ba.fch, 0, BT*ff), o.Slice(ba.fcg, 0, BT*ff)
		dfch, dfcg := g.needAct(&a.dfch, BT*ff), g.needAct(&a.dfcg, BT*ff)
		o.BiasGrad(G(pFpB), dres, BT, C)
		o.MatMul(dfcg, dres, wfp, BT, ff, C, false, false, msc, 0)
		g.weightGrad(G(pFpW), dres, fcg, C, ff, BT, msc, &a.gw, nil, neurons, 4*C)
		o.Fill(dfch, 0)
		o.GELUBackward(dfch, fch, dfcg)
		ln2 := o.Slice(ba.ln2, 0, BT*C)
		if neurons == nil {
			o.BiasGrad(G(pFcB), dfch, BT, ff)
		} else {
			gb := g.need(&a.gb, ff)
			o.Fill(gb, 0)
			o.BiasGrad(gb, dfch, BT, ff)
			o.ScatterAddRows(G(pFcB), gb, neurons, 1)
		}
		g.weightGrad(G(pFcW), dfch, ln2, ff, C, BT, 1, &a.gw, neurons, nil, 0)
		o.MatMul(a.dtmp, dfch, wfc, BT, C, ff, false, false, 1, 0)
		o.LayerNormBackward(dres, G(pLn2W), G(pLn2B), a.dtmp, o.Slice(ba.x1, 0, BT*C), P(pLn2W), o.Slice(ba.ln2m, 0, BT), o.Slice(ba.ln2r, 0, BT), BT, C)
		// attention: x1 = in + hsc·atty·wprojᵀ + bproj
		wqkv, wproj := PW(pQKVW), PW(pProjW)
		var rows, cols []int32
		if heads != nil {
			rows, cols = qkvRows(heads, c.Heads, c.Heads, HS), headCols(heads, HS)
			wqkv, wproj = g.needAct(&a.wqkv, 3*D*C), g.needAct(&a.wproj, C*D)
			o.GatherRows(wqkv, PW(pQKVW), rows, C)
			o.GatherCols(wproj, PW(pProjW), C, C, cols)
		}
		atty, datty := o.Slice(ba.atty, 0, BT*D), g.needAct(&a.datty, BT*D)
		qkv, dqkv := o.Slice(ba.qkv, 0, BT*3*D), g.needAct(&a.dqkv, BT*3*D)
		o.BiasGrad(G(pProjB), dres, BT, C)
		o.MatMul(datty, dres, wproj, BT, D, C, false, false, hsc, 0)
		g.weightGrad(G(pProjW), dres, atty, C, D, BT, hsc, &a.gw, nil, cols, C)
		o.Fill(dqkv, 0)
		o.AttentionBackward(dqkv, datty, atty, qkv, o.Slice(ba.att, 0, o.AttentionState(B, nh, T)), B, T, nh, nh, HS)
		ln1 := o.Slice(ba.ln1, 0, BT*C)
		if heads == nil {
			o.BiasGrad(G(pQKVB), dqkv, BT, 3*C)
		} else {
			gb := g.need(&a.gb, 3*D)
			o.Fill(gb, 0)
			o.BiasGrad(gb, dqkv, BT, 3*D)
			o.ScatterAddRows(G(pQKVB), gb, rows, 1)
		}
		g.weightGrad(G(pQKVW), dqkv, ln1, 3*D, C, BT, 1, &a.gw, rows, nil, 0)
		o.MatMul(a.dtmp, dqkv, wqkv, BT, C, 3*D, false, false, 1, 0)
		o.LayerNormBackward(dres, G(pLn1W), G(pLn1B), a.dtmp, g.inputs[l], P(pLn1W), o.Slice(ba.ln1m, 0, BT), o.Slice(ba.ln1r, 0, BT), BT, C)
	}
	o.EmbedBackward(dwte, g.param(g.Grads, 1), dres, g.ids, B, T, C)
	return o.Err()
}

// ActivationFloats is the number of values (float32, or bfloat16 with
// bf16 activations) the forward state holds
// now (it grows to the largest subnetwork run so far).
func (g *GPT2) ActivationFloats() int {
	if g.act == nil {
		return 0
	}
	n := 0
	a := g.act
	for _, b := range []kernels.Buf{a.wqkv, a.bqkv, a.wproj, a.wfc, a.bfc, a.wfp} {
		if b != nil {
			n += b.Len()
		}
	}
	for _, s := range a.slots {
		for _, b := range []kernels.Buf{s.out, s.x1, s.ln1, s.ln1m, s.ln1r, s.qkv, s.atty, s.att, s.ln2, s.ln2m, s.ln2r, s.fch, s.fcg} {
			if b != nil {
				n += b.Len()
			}
		}
	}
	return n
}
