package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/estkit/estkit/shards"
)

// ErrConfig marks a configuration that cannot run: a bad value, an unknown
// name, or a change that resuming does not allow.
var ErrConfig = errors.New("invalid configuration")

// Data is one token shard set of the mixture and its weight.
//
// Dir is the set's absolute path (or s3:// URL) and Key its manifest's key
// when the run started: eval, sample and resume open the set at Dir and
// refuse it when its key is no longer Key (rebuilt with other options, or
// replaced). A configuration written before keys were recorded has none:
// its sets are opened unchecked by key (docs/FORMATS.md).
type Data struct {
	Dir    string  `json:"dir"`
	Weight float64 `json:"weight"`
	Key    string  `json:"key,omitempty"`
}

// UnmarshalJSON decodes a data entry strictly; a missing weight is 1.
func (d *Data) UnmarshalJSON(b []byte) error {
	type plain Data
	p := plain{Weight: 1}
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	*d = Data(p)
	return nil
}

// Config is a run's resolved configuration, saved in the run directory.
//
// The fields come in groups, embedded structs (Batching, Parallel,
// LRSchedule, Optimizer, Precisions, Subnetworks, Evaluation,
// Checkpointing), whose fields Go promotes (c.LR) and encoding/json writes
// flat: the JSON keys and their order are those of every run written so
// far, byte for byte (TestConfigEncodingUnchanged), because a checkpoint
// records a hash of this encoding. Resolve builds a Config, Check
// validates one.
type Config struct {
	Preset string      `json:"preset,omitempty"` // the model preset, when the shape came from one
	Model  ModelConfig `json:"model"`
	Data   []Data      `json:"data"`
	Batching
	Parallel
	LRSchedule
	Optimizer
	Precisions
	Subnetworks
	Evaluation
	Checkpointing

	// Horizon is the step count the learning-rate schedule spans when a
	// resumed run was extended past it (0: Steps). Extension keeps the
	// schedule of the run as started: the rate reaches MinLR at the
	// original last step and stays there, and the EST stage ends stay
	// where they were (steps past the last end run the last stage).
	Horizon int `json:"horizon,omitempty"`
}

// Batching is what a step trains on: how many steps, of which batches,
// in which order, from which weights.
type Batching struct {
	Steps    int    `json:"steps"` // optimizer steps
	Batch    int    `json:"batch"` // micro-batch B
	Seq      int    `json:"seq"`   // T
	Accum    int    `json:"accum"` // micro-batches per step
	Seed     uint64 `json:"seed"`
	Order    Order  `json:"order"`
	InitFrom string `json:"init_from,omitempty"`
}

// Parallel is a data-parallel run's shape: Ranks processes (each with
// Batch×Accum sequences a step) and GlobalBatch the sequences a step
// trains on over all of them, Ranks×Batch×Accum; both absent (0) in a
// single process's run. The Session sets them from its Comm.
type Parallel struct {
	Ranks       int `json:"ranks,omitempty"`
	GlobalBatch int `json:"global_batch,omitempty"`
}

// LRSchedule is the learning rate over the steps: warmup to LR, then
// decay to MinLR.
type LRSchedule struct {
	LR     float64 `json:"lr"`
	MinLR  float64 `json:"min_lr"`
	Warmup int     `json:"warmup"`
	Decay  Decay   `json:"decay"`
}

// Optimizer is AdamW's settings and the gradient clipping before it.
type Optimizer struct {
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	Clip        float64 `json:"clip"` // global gradient norm; 0: off
}

// Precisions are the precisions of the products and of the stored
// activations (fp32 unless a backend offers bf16: cuda).
type Precisions struct {
	// MatMul is the precision of the matrix products: "" (fp32), or
	// "bf16" (inputs rounded to bfloat16, float32 accumulation) on a
	// backend with that variant (cuda).
	MatMul Precision `json:"matmul,omitempty"`
	// Attention is the precision of attention's products, forward and
	// backward: "" (fp32), or "bf16" (tensor-core products, float32
	// softmax and accumulation) on a backend with that variant (cuda).
	Attention Precision `json:"attention,omitempty"`
	// Activations is how the activations are stored: "" (fp32), or
	// "bf16" (and the products' copy of the weights) on a backend that
	// stores bfloat16 (cuda); parameters, gradients and moments stay
	// float32.
	Activations Precision `json:"activations,omitempty"`
}

// Subnetworks is EST: the schedule of stages and rates, and how the
// subnetworks are drawn.
type Subnetworks struct {
	EST         string         `json:"est"` // preset name, "custom" or "off"
	Schedule    *Schedule      `json:"schedule,omitempty"`
	Sampler     SamplerOptions `json:"sampler"`
	SampleEvery SampleEvery    `json:"sample_every"`
}

// Evaluation is when and on how much of the val split the loss is
// measured.
type Evaluation struct {
	EvalEvery   int `json:"eval_every"` // 0: at the end only
	EvalBatches int `json:"eval_batches"`
}

// Checkpointing is when checkpoints are written and how many are kept.
type Checkpointing struct {
	CheckpointEvery int `json:"checkpoint_every"` // 0: at the end only
	KeepCheckpoints int `json:"keep_checkpoints"`
}

// Order is the data order: shuffle or sequential.
type Order string

// Decay is the learning-rate decay after warmup: linear or cosine.
type Decay string

// Precision is the precision of a class of products or of stored
// activations: "" (fp32; "fp32" decodes to "") or "bf16".
type Precision string

// SampleEvery is how often EST draws a subnetwork: step or microbatch.
type SampleEvery string

// The values of the enumerations.
const (
	DecayLinear        Decay       = "linear"
	DecayCosine        Decay       = "cosine"
	FP32               Precision   = ""
	BF16               Precision   = "bf16"
	SampleStep         SampleEvery = "step"
	SampleMicrobatch   SampleEvery = "microbatch"
	LayerModeFixed                 = "fixed"
	LayerModeBernoulli             = "bernoulli"
)

func oneOf(what, v string, ok ...string) error {
	if slices.Contains(ok, v) {
		return nil
	}
	return fmt.Errorf("train: %w: %s %q (want %s)", ErrConfig, what, v, choices(ok))
}

// choices lists the names a value may take for a message; "" (fp32's
// stored spelling) is no name a user types.
func choices(ok []string) string {
	return strings.Join(slices.DeleteFunc(slices.Clone(ok), func(s string) bool { return s == "" }), " or ")
}

// choiceError is a value that is not one of its choices (ErrConfig). The
// UnmarshalText methods do not know the name the user wrote it under, a
// --config key or a flag: Config.UnmarshalJSON fills in the key, and
// settingError names the flag.
type choiceError struct {
	key   string // config.json's key ("sampler.layer_mode"); "" until known
	value string
	ok    []string
}

func (e *choiceError) Error() string {
	msg := fmt.Sprintf("%q (want %s)", e.value, choices(e.ok))
	if e.key != "" {
		msg = fmt.Sprintf("key %q: %s", e.key, msg)
	}
	return msg
}

func (e *choiceError) Is(target error) bool { return target == ErrConfig }

// wrapConfig gives an error of Check's list the prefix its others have.
func wrapConfig(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("train: %w: %w", ErrConfig, err)
}

// choice is a *choiceError when v is not one of ok.
func choice(key, v string, ok ...string) error {
	if slices.Contains(ok, v) {
		return nil
	}
	return &choiceError{key: key, value: v, ok: ok}
}

// UnmarshalText accepts shuffle or sequential.
func (o *Order) UnmarshalText(b []byte) error {
	if err := choice("", string(b), shards.Shuffle, shards.Sequential); err != nil {
		return err
	}
	*o = Order(b)
	return nil
}

// UnmarshalText accepts linear or cosine.
func (d *Decay) UnmarshalText(b []byte) error {
	if err := choice("", string(b), string(DecayLinear), string(DecayCosine)); err != nil {
		return err
	}
	*d = Decay(b)
	return nil
}

// UnmarshalText accepts fp32 (stored as "", so that a config has one
// spelling and one hash), "" and bf16.
func (p *Precision) UnmarshalText(b []byte) error {
	if err := choice("", string(b), "fp32", "bf16", ""); err != nil {
		return err
	}
	*p = Precision(strings.TrimPrefix(string(b), "fp32"))
	return nil
}

// UnmarshalText accepts step or microbatch.
func (s *SampleEvery) UnmarshalText(b []byte) error {
	if err := choice("", string(b), string(SampleStep), string(SampleMicrobatch)); err != nil {
		return err
	}
	*s = SampleEvery(b)
	return nil
}

// UnmarshalJSON decodes sampler options strictly (unknown keys are
// errors) and checks their names, keeping what the JSON does not give.
func (s *SamplerOptions) UnmarshalJSON(b []byte) error {
	type plain SamplerOptions
	p := plain(*s)
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	o := SamplerOptions(p)
	if err := o.checkNames(); err != nil {
		return err
	}
	*s = o
	return nil
}

// checkNames names the sampler's keys as config.json spells them.
func (s *SamplerOptions) checkNames() error {
	return errors.Join(choice("sampler.layer_mode", s.LayerMode, LayerModeFixed, LayerModeBernoulli),
		choice("sampler.heads", s.Heads, "groups", "within"),
		choice("sampler.update", s.Update, "dense", "sampled"))
}

// UnmarshalJSON decodes a configuration strictly: unknown keys, trailing
// data and unknown names of enumerations are errors. Keys absent from the
// JSON keep the values c holds, so decoding over a recipe overrides it.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	p := plain(*c)
	if err := strictDecode(b, &p); err != nil {
		if ce := (*choiceError)(nil); errors.As(err, &ce) && ce.key == "" {
			ce.key = choiceKey(b)
		}
		return err
	}
	*c = Config(p)
	return nil
}

// choiceKey is the top-level key of the configuration b whose value is not
// one of its choices: encoding/json gives a text unmarshaler's error no
// field, so each such key is decoded alone to find it.
func choiceKey(b []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return ""
	}
	for _, k := range []struct {
		key string
		v   any
	}{{"order", new(Order)}, {"decay", new(Decay)}, {"sample_every", new(SampleEvery)},
		{"matmul", new(Precision)}, {"attention", new(Precision)}, {"activations", new(Precision)}} {
		if raw, ok := top[k.key]; ok && json.Unmarshal(raw, k.v) != nil {
			return k.key
		}
	}
	return ""
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Recipe is the configuration a model of this shape trains with unless
// told otherwise, by family (Family.recipe adjusts the shared one):
// GPT-2's is nanoGPT's and the paper's (AdamW 0.9/0.95, weight decay 0.1,
// clip 1, learning rate 6e-4 with linear decay to a tenth), Llama's the
// paper's TinyLlama recipe (4e-4, cosine decay to a tenth). The data is
// left empty.
func Recipe(m ModelConfig) Config {
	c := Config{Model: m,
		Batching:      Batching{Steps: 100, Batch: 4, Seq: 64, Accum: 1, Order: shards.Shuffle},
		LRSchedule:    LRSchedule{LR: 6e-4, Decay: DecayLinear},
		Optimizer:     Optimizer{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Clip: 1},
		Subnetworks:   Subnetworks{EST: "off", Sampler: SamplerOptions{LayerMode: LayerModeFixed, Group: 1, Heads: "groups", Update: "dense"}, SampleEvery: SampleStep},
		Evaluation:    Evaluation{EvalBatches: 4},
		Checkpointing: Checkpointing{KeepCheckpoints: 2}}
	if f := m.family(); f != nil && f.recipe != nil {
		f.recipe(&c)
	}
	c.MinLR = c.LR / 10
	return c
}

// Defaults gives the enumerations of a configuration written before they
// were all recorded their default names, and spells fp32 one way. It
// never replaces a number: zero is a value (weight decay 0, clip 0).
func (c *Config) Defaults() {
	for _, p := range []*Precision{&c.MatMul, &c.Attention, &c.Activations} {
		if *p == "fp32" {
			*p = FP32
		}
	}
	if c.Order == "" {
		c.Order = shards.Shuffle
	}
	if c.Decay == "" {
		c.Decay = DecayLinear
	}
	if c.EST == "" {
		c.EST = "off"
	}
	if c.SampleEvery == "" {
		c.SampleEvery = SampleStep
	}
	if c.Sampler.LayerMode == "" {
		c.Sampler.LayerMode = LayerModeFixed
	}
	if c.Sampler.Update == "" {
		c.Sampler.Update = "dense"
	}
	if c.Sampler.Heads == "" {
		c.Sampler.Heads = "groups"
	}
	c.GlobalBatch = c.globalBatch()
}

// globalBatch is GlobalBatch as Ranks gives it: 0 for one process.
func (c *Config) globalBatch() int {
	if c.Ranks <= 1 {
		return 0
	}
	return c.Ranks * c.Batch * c.Accum
}

// maxSize bounds every size of a configuration, so that no product of
// sizes overflows before the memory estimate refuses it.
const maxSize = 1 << 24

// Check validates a resolved configuration: every number finite and in
// its range, every name known, the EST schedule consistent with its
// preset. Errors name the option as the command line and config.json do.
func (c *Config) Check() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, fmt.Errorf("train: %w: %s = %v: %s", ErrConfig, name, v, want))
	}
	posInt := func(name string, v int) {
		if v <= 0 || v > maxSize {
			bad(name, v, fmt.Sprintf("want a whole number from 1 to %d", maxSize))
		}
	}
	nonNegInt := func(name string, v int) {
		if v < 0 {
			bad(name, v, "want 0 or more")
		}
	}
	finite := func(name string, v, lo, hi float64, loOpen, hiOpen bool) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			bad(name, v, "want a finite number")
		case v < lo || loOpen && v == lo || v > hi || hiOpen && v == hi:
			l, h := "[", "]"
			if loOpen {
				l = "("
			}
			if hiOpen {
				h = ")"
			}
			bad(name, v, fmt.Sprintf("want a number in %s%g, %g%s", l, lo, hi, h))
		}
	}
	posInt("steps", c.Steps)
	posInt("batch", c.Batch)
	posInt("seq", c.Seq)
	posInt("accum", c.Accum)
	nonNegInt("ranks", c.Ranks)
	if c.GlobalBatch != c.globalBatch() {
		bad("global_batch", c.GlobalBatch, fmt.Sprintf("want ranks×batch×accum = %d", c.globalBatch()))
	}
	nonNegInt("warmup", c.Warmup)
	nonNegInt("eval_every", c.EvalEvery)
	nonNegInt("eval_batches", c.EvalBatches) // 0: no evaluation
	nonNegInt("checkpoint_every", c.CheckpointEvery)
	posInt("keep_checkpoints", c.KeepCheckpoints)
	nonNegInt("horizon", c.Horizon)
	// AdamW runs in float32 (kernels.AdamWArgs): a setting must keep its
	// meaning there, not overflow to Inf (lr 1e308), flush to 0 (eps
	// 1e-320: a division by zero) or round to 1 (beta2 1-1e-9: a bias
	// correction of 0).
	fits32 := func(name string, v float64, zero bool) {
		switch f := float32(v); {
		case math.IsNaN(v) || math.IsInf(v, 0):
		case math.IsInf(float64(f), 0):
			bad(name, v, fmt.Sprintf("want at most %g (the optimizer computes in float32)", math.MaxFloat32))
		case v != 0 && math.Abs(v) < 0x1p-126 && zero:
			bad(name, v, fmt.Sprintf("want 0 or at least %g (the optimizer computes in float32)", 0x1p-126))
		case v != 0 && math.Abs(v) < 0x1p-126:
			bad(name, v, fmt.Sprintf("want at least %g (the optimizer computes in float32)", 0x1p-126))
		}
	}
	finite("lr", c.LR, 0, math.MaxFloat64, true, false)
	// min_lr is bounded by lr, and derived from it where not given: with
	// lr itself refused, an error about min_lr would only repeat it
	lrOK := c.LR >= 0x1p-126 && c.LR <= math.MaxFloat32
	if lrOK {
		finite("min_lr", c.MinLR, 0, c.LR, false, false)
	}
	finite("beta1", c.Beta1, 0, 1, false, true)
	finite("beta2", c.Beta2, 0, 1, false, true)
	finite("eps", c.Eps, 0, 1, true, false)
	finite("weight_decay", c.WeightDecay, 0, math.MaxFloat64, false, false)
	finite("clip", c.Clip, 0, math.MaxFloat64, false, false)
	for _, x := range []struct {
		name string
		v    float64
		zero bool // 0 is a value of it (lr and eps refuse 0 above)
	}{{"lr", c.LR, false}, {"min_lr", c.MinLR, true}, {"eps", c.Eps, false}, {"weight_decay", c.WeightDecay, true}, {"clip", c.Clip, true}, {"beta1", c.Beta1, true}, {"beta2", c.Beta2, true}} {
		if x.name != "min_lr" || lrOK {
			fits32(x.name, x.v, x.zero)
		}
	}
	for _, b := range []struct {
		name string
		v    float64
	}{{"beta1", c.Beta1}, {"beta2", c.Beta2}} {
		if b.v < 1 && float32(b.v) >= 1 {
			bad(b.name, b.v, "want a number below 1 in float32 (the optimizer's precision): it rounds to 1")
		}
	}
	if c.Model.MaxT > 0 && c.Seq > c.Model.MaxT {
		errs = append(errs, fmt.Errorf("train: %w: seq %d is longer than the model's %d positions", ErrConfig, c.Seq, c.Model.MaxT))
	}
	if len(c.Data) == 0 {
		errs = append(errs, fmt.Errorf("train: %w: no data (--data SET[:weight])", ErrConfig))
	}
	for _, d := range c.Data {
		if d.Dir == "" {
			bad("data", fmt.Sprintf("%q", d.Dir), "want a token shard set's directory")
		}
		finite("weight of data "+d.Dir, d.Weight, 0, math.MaxFloat64, true, false)
	}
	errs = append(errs, oneOf("order", string(c.Order), shards.Shuffle, shards.Sequential),
		oneOf("decay", string(c.Decay), string(DecayLinear), string(DecayCosine)),
		oneOf("sample_every", string(c.SampleEvery), string(SampleStep), string(SampleMicrobatch)),
		wrapConfig(c.Sampler.checkNames()))
	for _, p := range []struct {
		name string
		v    Precision
	}{{"matmul", c.MatMul}, {"attention", c.Attention}, {"activations", c.Activations}} {
		errs = append(errs, oneOf(p.name, string(p.v), "", "fp32", string(BF16))) // "fp32" for the message: Defaults stores it as ""
	}
	if err := c.checkModel(); err != nil {
		errs = append(errs, err)
	} else if g := c.Sampler.Group; g <= 0 || c.Model.MLP()%g != 0 {
		bad("neuron_group", g, fmt.Sprintf("want a divisor of the MLP width %d", c.Model.MLP()))
	}
	errs = append(errs, c.checkEST())
	return errors.Join(errs...)
}

// padMultiple is what a padded vocabulary is a multiple of: llm.c's
// choice, which makes the vocabulary's matrix products split evenly into
// the kernels' tiles (GPT-2's 50257 becomes 50304; Llama's 32000 is one).
const padMultiple = 128

// paddedVocab is the vocabulary v rounded up to a multiple of
// padMultiple, as every preset pads it: the padded size of a --config
// model that gives none.
func paddedVocab(v int) int {
	return (v + padMultiple - 1) / padMultiple * padMultiple
}

// checkModel validates the shape, with bounds on every size first so that
// nothing downstream multiplies into an overflow.
func (c *Config) checkModel() error {
	m := c.Model
	// Named by their config.json keys (model.vocab), as the user wrote them.
	for _, v := range []struct {
		name string
		n    int
		min  int
	}{{"vocab", m.Vocab, 1}, {"padded", m.Padded, 1}, {"layers", m.Layers, 1}, {"heads", m.Heads, 1}, {"kv_heads", m.KVHeads, 0},
		{"channels", m.Channels, 1}, {"ff", m.FF, 0}, {"max_t", m.MaxT, 1}} {
		if v.n < v.min || v.n > maxSize {
			return fmt.Errorf("train: %w: model.%s = %d: want %d to %d", ErrConfig, v.name, v.n, v.min, maxSize)
		}
	}
	if m.Padded < m.Vocab {
		return fmt.Errorf("train: %w: model.padded = %d: want at least model.vocab = %d", ErrConfig, m.Padded, m.Vocab)
	}
	for _, v := range []struct {
		name string
		x    float64
	}{{"rope_theta", m.RopeTheta}, {"norm_eps", m.NormEps}} {
		if math.IsNaN(v.x) || math.IsInf(v.x, 0) || v.x < 0 {
			return fmt.Errorf("train: %w: model.%s = %v: want a finite number, 0 or more", ErrConfig, v.name, v.x)
		}
	}
	if err := m.Check(); err != nil {
		return fmt.Errorf("%w (%w)", err, ErrConfig)
	}
	return nil
}

// checkEST: "off" has no schedule, "custom" has one, and a preset's is the
// preset scaled to the run's steps (or, for an extended run, its horizon).
func (c *Config) checkEST() error {
	switch p, ok := ESTPresets[c.EST]; {
	case c.EST == "off":
		if c.Schedule != nil {
			return fmt.Errorf("train: %w: est off with a schedule: give est custom to train with it", ErrConfig)
		}
	case c.EST == "custom":
		if c.Schedule == nil {
			return fmt.Errorf("train: %w: est custom without a schedule (--est-stages and --est-rates)", ErrConfig)
		}
	case ok:
		if c.Schedule == nil {
			return fmt.Errorf("train: %w: est %s without its schedule (Resolve derives it)", ErrConfig, c.EST)
		}
		if want := p.Scaled(c.horizon()); !slices.Equal(want.Ends, c.Schedule.Ends) || !slices.Equal(want.Rates, c.Schedule.Rates) {
			return fmt.Errorf("train: %w: est %s's schedule over %d steps is %v %v, the configuration gives %v %v: give --est %[2]s to scale the preset to these steps, or est custom for another schedule",
				ErrConfig, c.EST, c.horizon(), want.Ends, want.Rates, c.Schedule.Ends, c.Schedule.Rates)
		}
	default:
		return fmt.Errorf("train: %w: est %q (want %s, custom or off)", ErrConfig, c.EST, strings.Join(estPresetNames(), ", "))
	}
	if c.Schedule != nil {
		if err := c.Schedule.Check(); err != nil {
			return fmt.Errorf("%w (%w)", err, ErrConfig)
		}
		// a stage ending past the run would be recorded but never reached
		// (a preset scaled to fewer steps than it has stages gives ends
		// 1, 2, 3 for a run of 1); steps past the last end train in the
		// last stage, as an extended run's do
		if ends := c.Schedule.Ends; len(ends) > 0 && c.horizon() > 0 && ends[len(ends)-1] > c.horizon() {
			what := "est-stages " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ends)), ","), "[]")
			if c.EST != "custom" {
				what = fmt.Sprintf("est %s's %d stages", c.EST, len(ends))
			}
			run, fix := fmt.Sprintf("the run's %d steps", c.Steps), fmt.Sprintf("give at least %d steps", ends[len(ends)-1])
			if c.Horizon > 0 {
				run, fix = fmt.Sprintf("the run's horizon of %d steps", c.Horizon), fmt.Sprintf("give a horizon of at least %d", ends[len(ends)-1])
			}
			return fmt.Errorf("train: %w: %s end past %s (stage ends %v): %s, or stages that end by step %d",
				ErrConfig, what, run, ends, fix, c.horizon())
		}
	}
	return nil
}

func estPresetNames() []string {
	var n []string
	for k := range ESTPresets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// horizon is the number of steps the learning-rate schedule spans.
func (c *Config) horizon() int {
	if c.Horizon > 0 {
		return c.Horizon
	}
	return c.Steps
}

// LRAt is the learning rate of a step (0-based): linear warmup, then linear
// or cosine decay to MinLR at the last step of the horizon, MinLR after it.
func (c *Config) LRAt(step int) float64 {
	if step < c.Warmup {
		return c.LR * float64(step+1) / float64(c.Warmup)
	}
	n := c.horizon()
	if n <= c.Warmup+1 {
		return c.LR
	}
	frac := min(1, float64(step-c.Warmup)/float64(n-1-c.Warmup))
	if c.Decay == DecayCosine {
		return c.MinLR + 0.5*(c.LR-c.MinLR)*(1+math.Cos(math.Pi*frac))
	}
	return c.LR + (c.MinLR-c.LR)*frac
}

// evalAt says whether the run evaluates after steps steps are done: every
// EvalEvery steps (0: never in between) and always at the end.
func (c *Config) evalAt(steps int) bool {
	return c.EvalBatches > 0 && (steps == c.Steps || c.EvalEvery > 0 && steps%c.EvalEvery == 0)
}

// encode is the configuration as config.json holds it and its hash (the
// one checkpoints record).
func (c *Config) encode() ([]byte, string, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, "", fmt.Errorf("train: %w: %w", ErrConfig, err)
	}
	h := sha256.Sum256(b)
	return b, hex.EncodeToString(h[:8]), nil
}

// Warnings are the settings a run accepts that cannot do all they say,
// said at start (OpenSession logs them): a warmup longer than the run, so
// the learning rate never reaches lr; heads sampled "within" groups of
// one query head, the same as "groups"; EST stages that end before the
// run does, so its last steps train in the last stage's rates.
func (c *Config) Warnings() []string {
	var w []string
	if h := c.horizon(); c.Warmup >= h && h > 0 {
		w = append(w, fmt.Sprintf("warmup %d: the run has %d steps, so the learning rate rises to %.3g and never reaches lr %g", c.Warmup, h, c.LRAt(h-1), c.LR))
	}
	if c.Schedule != nil && c.Sampler.Heads == "within" && c.Model.KV() == c.Model.Heads {
		w = append(w, "est_heads within: the model has a key/value head per query head, so within and groups sample alike")
	}
	if c.EvalBatches == 0 && c.EvalEvery > 0 {
		w = append(w, fmt.Sprintf("eval_every %d: eval_batches 0 turns evaluation off", c.EvalEvery))
	}
	if c.Schedule != nil && len(c.Schedule.Ends) > 0 {
		if end, h := c.Schedule.Ends[len(c.Schedule.Ends)-1], c.horizon(); end < h {
			w = append(w, fmt.Sprintf("EST stages end at step %d of %d: the last %d steps train in the last stage's rates %v", end, h, h-end, c.Schedule.Rates[len(c.Schedule.Rates)-1]))
		}
	}
	return w
}
