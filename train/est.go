package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Rates are the sampling rates of one EST stage: the fractions of attention
// heads, MLP neurons and blocks that run.
type Rates struct {
	PH float64 `json:"ph"`
	PM float64 `json:"pm"`
	PL float64 `json:"pl"`
}

func (r Rates) String() string { return fmt.Sprintf("%g:%g:%g", r.PH, r.PM, r.PL) }

// Schedule maps a step to a stage and its rates: stage i covers the steps
// before Ends[i] (and after the previous end); steps past the last end stay
// in the last stage.
type Schedule struct {
	Ends  []int   `json:"ends"`
	Rates []Rates `json:"rates"`
	// Realised are the rates each stage runs at on the run's model
	// (Sampler.Realised), recorded in config.json; computed, not read.
	Realised []Rates `json:"realised_rates,omitempty"`
}

// ESTPresets: est-gpt2 is the paper's GPT-2 schedule (stage ends 20k, 70k,
// 150k steps), which saves 26.7% of the transformer blocks' FLOPs.
var ESTPresets = map[string]Schedule{
	"est-gpt2": {Ends: []int{20000, 70000, 150000}, Rates: []Rates{{0.5, 0.5, 0.5}, {0.5, 0.5, 1}, {1, 1, 1}}},
	// est-tinyllama is our reconstruction (the paper gives TinyLlama's 60k
	// steps and its 25.0% saving, not its stages): GPT-2's rates over stage
	// fractions 0.2, 0.2 and 0.6 of the run, exactly 25.0% of the block
	// FLOPs when heads are sampled as whole key/value groups.
	"est-tinyllama": {Ends: []int{12000, 24000, 60000}, Rates: []Rates{{0.5, 0.5, 0.5}, {0.5, 0.5, 1}, {1, 1, 1}}},
}

// ParseSchedule reads stage ends "S1,S2,..." and rates "pH:pM:pL,...".
func ParseSchedule(ends, rates string) (Schedule, error) {
	var s Schedule
	for _, f := range strings.Split(ends, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return s, fmt.Errorf("train: stage end %q: %w", f, err)
		}
		s.Ends = append(s.Ends, n)
	}
	for _, f := range strings.Split(rates, ",") {
		p := strings.Split(strings.TrimSpace(f), ":")
		if len(p) != 3 {
			return s, fmt.Errorf("train: rates %q: want pH:pM:pL", f)
		}
		var v [3]float64
		for i, x := range p {
			var err error
			if v[i], err = strconv.ParseFloat(x, 64); err != nil {
				return s, fmt.Errorf("train: rates %q: %w", f, err)
			}
			if underflows(x, v[i]) {
				return s, fmt.Errorf("train: rates %q: %s underflows: %s", f, x, underflowWant)
			}
		}
		s.Rates = append(s.Rates, Rates{v[0], v[1], v[2]})
	}
	return s, s.Check()
}

// Check validates a schedule.
func (s Schedule) Check() error {
	if len(s.Ends) == 0 || len(s.Ends) != len(s.Rates) {
		return fmt.Errorf("train: %d stage ends and %d rates: want one rate triple per stage", len(s.Ends), len(s.Rates))
	}
	for i, e := range s.Ends {
		if e <= 0 || i > 0 && e <= s.Ends[i-1] {
			return fmt.Errorf("train: stage ends %v must increase from above 0", s.Ends)
		}
	}
	for _, r := range s.Rates {
		for _, p := range []float64{r.PH, r.PM, r.PL} {
			if !(p > 0 && p <= 1) {
				return fmt.Errorf("train: rate %g outside (0, 1] in %s", p, r)
			}
		}
	}
	return nil
}

// Scaled stretches or shrinks the stage ends proportionally so that the
// last ends at steps (each end at least one step after the previous).
func (s Schedule) Scaled(steps int) Schedule {
	out := Schedule{Rates: slices.Clone(s.Rates)}
	last := s.Ends[len(s.Ends)-1]
	prev := 0
	for _, e := range s.Ends {
		v := int(math.Round(float64(e) * float64(steps) / float64(last)))
		v = max(v, prev+1)
		out.Ends = append(out.Ends, v)
		prev = v
	}
	return out
}

// At returns the stage (0-based) and rates of a step (0-based).
func (s Schedule) At(step int) (int, Rates) {
	for i, e := range s.Ends {
		if step < e {
			return i, s.Rates[i]
		}
	}
	return len(s.Ends) - 1, s.Rates[len(s.Rates)-1]
}

// SamplerOptions are the choices the paper leaves open.
type SamplerOptions struct {
	// LayerMode "fixed" (default): exactly round(L·pL) blocks, uniform
	// without replacement; "bernoulli": each block runs with probability
	// pL (at least one does).
	LayerMode string `json:"layer_mode"`
	// Shared: every block uses the same heads and neurons (default false:
	// each block draws its own).
	Shared bool `json:"shared"`
	// Group: MLP neurons are sampled in groups of this many consecutive
	// neurons (default 1).
	Group int `json:"group"`
	// Heads, for grouped-query attention: "groups" (default) samples
	// whole key/value groups with all their query heads, so that keys and
	// values are computed only for the groups drawn; "within" samples the
	// same number of query heads in every group, and every group's keys
	// and values are computed. Multi-head attention (one query head per
	// group) is the same under both.
	Heads string `json:"heads,omitempty"`
	// Update "dense" (default): every parameter of a running block is
	// updated, the unsampled heads and neurons with a zero gradient, so
	// that AdamW still moves them by momentum and weight decay (PyTorch's
	// semantics for a masked subnetwork); "sampled": only the sampled heads
	// and neurons are updated, the rest keep their values and moments.
	// Skipped blocks are never updated.
	Update string `json:"update"`
}

// Plan is the selections of one optimizer step's micro-batches (a nil
// entry runs the full model).
type Plan []*Selection

// Skipped are the blocks of layers that no micro-batch runs.
func (p Plan) Skipped(layers int) map[int]bool {
	ran := map[int]bool{}
	for _, s := range p {
		if s == nil || s.Layers == nil {
			return nil
		}
		for _, l := range s.Layers {
			ran[l] = true
		}
	}
	skipped := map[int]bool{}
	for l := 0; l < layers; l++ {
		if !ran[l] {
			skipped[l] = true
		}
	}
	return skipped
}

// Units are, per running block, the heads and neurons that some
// micro-batch ran (nil lists where one ran them all): what the "sampled"
// update changes.
func (p Plan) Units(layers int) map[int]Units {
	out := map[int]Units{}
	for l := 0; l < layers; l++ {
		var heads, neurons []int32
		allH, allN, ran := false, false, false
		for _, s := range p {
			if s != nil && s.Layers != nil && !slices.Contains(s.Layers, l) {
				continue
			}
			ran = true
			if s == nil || s.Heads == nil || s.Heads[l] == nil {
				allH = true
			} else {
				heads = append(heads, s.Heads[l]...)
			}
			if s == nil || s.Neurons == nil || s.Neurons[l] == nil {
				allN = true
			} else {
				neurons = append(neurons, s.Neurons[l]...)
			}
		}
		if !ran {
			continue
		}
		u := Units{}
		if !allH {
			slices.Sort(heads)
			u.Heads = slices.Compact(heads)
		}
		if !allN {
			slices.Sort(neurons)
			u.Neurons = slices.Compact(neurons)
		}
		out[l] = u
	}
	return out
}

// Sampler draws the subnetwork of each step: a pure function of (seed,
// step, draw), so that runs replay and est-trace can recompute it.
type Sampler struct {
	Seed     uint64
	Layers   int
	Heads    int // query heads
	KVHeads  int // key/value heads (0: Heads)
	Neurons  int // MLP width
	Schedule Schedule
	Opt      SamplerOptions
}

// Sample returns the selection of a step (draw numbers the micro-batch when
// sampling per micro-batch; 0 otherwise) and the rates it realises
// (Realised). At rates (1,1,1) it is nil: the full model. The heads' and
// neurons' outputs are scaled by n/|I|, the inverse of the fraction kept,
// which keeps their expectation when a count rounds; a draw that keeps
// every head (one key/value group sampled whole) or every neuron runs them
// all, unscaled.
func (s *Sampler) Sample(step, draw int) (*Selection, int, Rates) {
	stage, r := s.Schedule.At(step)
	if r.PH == 1 && r.PM == 1 && r.PL == 1 {
		return nil, stage, r
	}
	rng := rand.New(rand.NewPCG(s.Seed^0x657374, uint64(step)<<16|uint64(draw)))
	sel := &Selection{HScale: 1, MScale: 1}
	// blocks
	if r.PL < 1 {
		if s.Opt.LayerMode == "bernoulli" {
			for l := 0; l < s.Layers; l++ {
				if rng.Float64() < r.PL {
					sel.Layers = append(sel.Layers, l)
				}
			}
			if len(sel.Layers) == 0 {
				sel.Layers = []int{rng.IntN(s.Layers)}
			}
		} else {
			for _, l := range choose(rng, s.Layers, count(s.Layers, r.PL)) {
				sel.Layers = append(sel.Layers, int(l))
			}
		}
	}
	group := max(s.Opt.Group, 1)
	sel.Heads = make([][]int32, s.Layers)
	sel.Neurons = make([][]int32, s.Layers)
	for l := 0; l < s.Layers; l++ {
		if s.Opt.Shared && l > 0 {
			sel.Heads[l], sel.Neurons[l] = sel.Heads[0], sel.Neurons[0]
			continue
		}
		if r.PH < 1 {
			sel.Heads[l] = s.heads(rng, r.PH)
		}
		if r.PM < 1 {
			groups := choose(rng, s.Neurons/group, count(s.Neurons/group, r.PM))
			n := make([]int32, 0, len(groups)*group)
			for _, g := range groups {
				for i := 0; i < group; i++ {
					n = append(n, g*int32(group)+int32(i))
				}
			}
			sel.Neurons[l] = n
		}
	}
	// Every block keeps as many as block 0 (the counts depend on the rates
	// alone), so one scale serves all.
	if h := len(sel.Heads[0]); h == s.Heads {
		clear(sel.Heads)
	} else if h > 0 {
		sel.HScale = float32(float64(s.Heads) / float64(h))
	}
	if n := len(sel.Neurons[0]); n == s.Neurons {
		clear(sel.Neurons)
	} else if n > 0 {
		sel.MScale = float32(float64(s.Neurons) / float64(n))
	}
	return sel, stage, s.Realised(r)
}

// Realised are the rates a stage's nominal rates r realise on this model:
// the fractions of query heads, neurons and blocks a draw keeps (counts
// round, at least one; a key/value group is kept or dropped whole in
// "groups" mode). Under Bernoulli block sampling pL stays the nominal
// probability.
func (s *Sampler) Realised(r Rates) Rates {
	out := r
	if r.PH < 1 {
		kept := count(s.Heads, r.PH)
		if nkv := s.KVHeads; nkv != 0 && nkv != s.Heads {
			G := s.Heads / nkv
			if s.Opt.Heads == "within" {
				kept = count(G, r.PH) * nkv
			} else {
				kept = count(nkv, r.PH) * G
			}
		}
		out.PH = float64(kept) / float64(s.Heads)
	}
	if r.PM < 1 {
		group := max(s.Opt.Group, 1)
		out.PM = float64(count(s.Neurons/group, r.PM)*group) / float64(s.Neurons)
	}
	if r.PL < 1 && s.Opt.LayerMode != "bernoulli" {
		out.PL = float64(count(s.Layers, r.PL)) / float64(s.Layers)
	}
	return out
}

// Warnings name the stages whose rates this model cannot realise within
// 5% (a single key/value group cannot be halved; 2 of 3 groups is not a
// half), for the trainer to say at start.
func (s *Sampler) Warnings() []string {
	var out []string
	for i, r := range s.Schedule.Rates {
		got := s.Realised(r)
		for _, x := range []struct {
			what      string
			want, got float64
		}{{"heads", r.PH, got.PH}, {"neurons", r.PM, got.PM}, {"blocks", r.PL, got.PL}} {
			if math.Abs(x.got-x.want) > 0.05*x.want {
				out = append(out, fmt.Sprintf("EST stage %d: %s rate %g runs as %.4g on this model", i, x.what, x.want, x.got))
			}
		}
	}
	return out
}

// heads draws one block's query heads at rate p.
func (s *Sampler) heads(rng *rand.Rand, p float64) []int32 {
	nkv := s.KVHeads
	if nkv == 0 || nkv == s.Heads {
		return choose(rng, s.Heads, count(s.Heads, p))
	}
	G := int32(s.Heads / nkv)
	var heads []int32
	if s.Opt.Heads == "within" {
		k := count(int(G), p)
		for g := int32(0); g < int32(nkv); g++ {
			for _, h := range choose(rng, int(G), k) {
				heads = append(heads, g*G+h)
			}
		}
		return heads
	}
	for _, g := range choose(rng, nkv, count(nkv, p)) {
		for h := int32(0); h < G; h++ {
			heads = append(heads, g*G+h)
		}
	}
	return heads
}

// NewSampler is the sampler of a run's configuration (nil without an EST
// schedule).
func NewSampler(cfg *Config) *Sampler {
	if cfg.Schedule == nil {
		return nil
	}
	m := cfg.Model
	return &Sampler{Seed: cfg.Seed, Layers: m.Layers, Heads: m.Heads, KVHeads: m.KV(), Neurons: m.MLP(), Schedule: *cfg.Schedule, Opt: cfg.Sampler}
}

// realise records in cfg the rates its EST stages run at on its model
// (Schedule.Realised, on a copy of the schedule) and returns the warnings
// of the rates the model cannot realise.
func realise(cfg *Config) []string {
	s := NewSampler(cfg)
	if s == nil {
		return nil
	}
	sch := *cfg.Schedule
	sch.Realised = make([]Rates, len(sch.Rates))
	for i, r := range sch.Rates {
		sch.Realised[i] = s.Realised(r)
	}
	cfg.Schedule = &sch
	return s.Warnings()
}

// count is round(n·p), at least 1.
func count(n int, p float64) int { return max(1, min(n, int(math.Round(float64(n)*p)))) }

// choose draws k of [0, n) uniformly without replacement, sorted.
func choose(rng *rand.Rand, n, k int) []int32 {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(i)
	}
	for i := 0; i < k; i++ {
		j := i + rng.IntN(n-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	out := idx[:k]
	slices.Sort(out)
	return out
}

// FLOPs of a forward and backward pass over tokens tokens (3× the forward
// matrix products, 2 FLOPs per multiply-add), by the paper's convention
// (transformer blocks only: projections, attention scores and the MLP) and
// all-inclusive (plus the LM head).
type FLOPs struct {
	Blocks float64 `json:"blocks"`
	All    float64 `json:"all"`
}

// StepFLOPs counts the FLOPs of B×T tokens through cfg under sel (nil: the
// full model): each running block's FLOPs per token as its family counts
// them (Family.blockFLOPs), and the LM head (zero for an unknown Arch,
// which Check reports).
func (cfg ModelConfig) StepFLOPs(sel *Selection, B, T int) FLOPs {
	f := cfg.family()
	if f == nil {
		return FLOPs{}
	}
	C := float64(cfg.Channels)
	tokens := float64(B * T)
	var blocks float64
	layers := make([]int, 0, cfg.Layers)
	if sel != nil && sel.Layers != nil {
		layers = sel.Layers
	} else {
		for l := 0; l < cfg.Layers; l++ {
			layers = append(layers, l)
		}
	}
	for _, l := range layers {
		nh, nkv, ff := float64(cfg.Heads), float64(cfg.KV()), float64(cfg.MLP())
		if sel != nil && l < len(sel.Heads) && sel.Heads[l] != nil {
			nh = float64(len(sel.Heads[l]))
			nkv = float64(len(kvHeads(sel.Heads[l], cfg.Heads, cfg.KV())))
		}
		if sel != nil && l < len(sel.Neurons) && sel.Neurons[l] != nil {
			ff = float64(len(sel.Neurons[l]))
		}
		blocks += f.blockFLOPs(cfg, nh, nkv, ff, float64(T)) * tokens
	}
	head := 2 * C * float64(cfg.Vocab) * tokens
	return FLOPs{Blocks: 3 * blocks, All: 3 * (blocks + head)}
}

// denseBlockFLOPs is one token's forward FLOPs through a pre-norm block
// with nh query and nkv key/value heads, ff neurons and an MLP of mlpMats
// C×ff matrices, at context T: the q, k and v projections, the scores
// and their weighted sum (T keys each), the output projection and the MLP.
func denseBlockFLOPs(c ModelConfig, nh, nkv, ff, T, mlpMats float64) float64 {
	C, HS := float64(c.Channels), float64(c.Channels/c.Heads)
	D := nh * HS
	return 2*C*(nh+2*nkv)*HS + 2*T*D*2 + 2*D*C + 2*C*ff*mlpMats
}
