package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/estkit/estkit/shards"
)

// Data is one token shard set of the mixture and its weight.
type Data struct {
	Dir    string  `json:"dir"`
	Weight float64 `json:"weight"`
}

// Config is a run's resolved configuration, saved in the run directory.
type Config struct {
	Preset string      `json:"preset,omitempty"` // the model preset, when the shape came from one
	Model  ModelConfig `json:"model"`
	Data   []Data      `json:"data"`

	Steps    int    `json:"steps"` // optimizer steps
	Batch    int    `json:"batch"` // micro-batch B
	Seq      int    `json:"seq"`   // T
	Accum    int    `json:"accum"` // micro-batches per step
	Seed     uint64 `json:"seed"`
	Order    string `json:"order"`
	InitFrom string `json:"init_from,omitempty"`

	LR          float64 `json:"lr"`
	MinLR       float64 `json:"min_lr"`
	Warmup      int     `json:"warmup"`
	Decay       string  `json:"decay"` // "linear" or "cosine"
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	Clip        float64 `json:"clip"` // global gradient norm; 0: off
	// MatMul is the precision of the matrix products: "" or "fp32", or
	// "bf16" (inputs rounded to bfloat16, float32 accumulation) on a
	// backend with that variant (cuda).
	MatMul string `json:"matmul,omitempty"`
	// Attention is the precision of attention's products, forward and
	// backward: "" or "fp32", or "bf16" (tensor-core products, float32
	// softmax and accumulation) on a backend with that variant (cuda).
	Attention string `json:"attention,omitempty"`
	// Activations is how the activations are stored: "" or "fp32", or
	// "bf16" (and the products' copy of the weights) on a backend that
	// stores bfloat16 (cuda); parameters, gradients and moments stay
	// float32.
	Activations string `json:"activations,omitempty"`

	EST         string         `json:"est"` // preset name, "custom" or "off"
	Schedule    *Schedule      `json:"schedule,omitempty"`
	Sampler     SamplerOptions `json:"sampler"`
	SampleEvery string         `json:"sample_every"` // "step" or "microbatch"

	EvalEvery       int `json:"eval_every"`
	EvalBatches     int `json:"eval_batches"`
	CheckpointEvery int `json:"checkpoint_every"`
	KeepCheckpoints int `json:"keep_checkpoints"`
}

// Defaults fills what is unset with GPT-2's recipe (nanoGPT's and the
// paper's: AdamW 0.9/0.95, weight decay 0.1, clip 1, warmup then linear
// decay to a tenth).
func (c *Config) Defaults() {
	if c.MatMul == "fp32" {
		c.MatMul = "" // the default, spelt one way so that the config's hash is one
	}
	if c.Attention == "fp32" {
		c.Attention = ""
	}
	if c.Activations == "fp32" {
		c.Activations = ""
	}
	set := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Accum == 0 {
		c.Accum = 1
	}
	if c.Order == "" {
		c.Order = shards.Shuffle
	}
	set(&c.LR, 6e-4)
	set(&c.Beta1, 0.9)
	set(&c.Beta2, 0.95)
	set(&c.Eps, 1e-8)
	set(&c.WeightDecay, 0.1)
	set(&c.Clip, 1)
	if c.MinLR == 0 {
		c.MinLR = c.LR / 10
	}
	if c.Decay == "" {
		c.Decay = "linear"
	}
	if c.EST == "" {
		c.EST = "off"
	}
	if c.SampleEvery == "" {
		c.SampleEvery = "step"
	}
	if c.Sampler.LayerMode == "" {
		c.Sampler.LayerMode = "fixed"
	}
	if c.Sampler.Group == 0 {
		c.Sampler.Group = 1
	}
	if c.Sampler.Update == "" {
		c.Sampler.Update = "dense"
	}
	if c.Sampler.Heads == "" {
		c.Sampler.Heads = "groups"
	}
	if c.EvalBatches == 0 {
		c.EvalBatches = 4
	}
	if c.KeepCheckpoints == 0 {
		c.KeepCheckpoints = 2
	}
}

// Check validates a resolved configuration.
func (c *Config) Check() error {
	switch {
	case c.MatMul != "" && c.MatMul != "fp32" && c.MatMul != "bf16":
		return fmt.Errorf("train: matmul %q: fp32 or bf16", c.MatMul)
	case c.Attention != "" && c.Attention != "fp32" && c.Attention != "bf16":
		return fmt.Errorf("train: attention %q: fp32 or bf16", c.Attention)
	case c.Activations != "" && c.Activations != "fp32" && c.Activations != "bf16":
		return fmt.Errorf("train: activations %q: fp32 or bf16", c.Activations)
	case c.Steps <= 0 || c.Batch <= 0 || c.Seq <= 0 || c.Accum <= 0:
		return fmt.Errorf("train: steps %d, batch %d, seq %d and accum %d must be positive", c.Steps, c.Batch, c.Seq, c.Accum)
	case c.Seq > c.Model.MaxT:
		return fmt.Errorf("train: seq %d is longer than the model's %d positions", c.Seq, c.Model.MaxT)
	case len(c.Data) == 0:
		return errors.New("train: no data (--data SET[:weight])")
	case c.Decay != "linear" && c.Decay != "cosine":
		return fmt.Errorf("train: decay %q (want linear or cosine)", c.Decay)
	case c.SampleEvery != "step" && c.SampleEvery != "microbatch":
		return fmt.Errorf("train: sample-every %q (want step or microbatch)", c.SampleEvery)
	case c.Sampler.LayerMode != "fixed" && c.Sampler.LayerMode != "bernoulli":
		return fmt.Errorf("train: layer mode %q (want fixed or bernoulli)", c.Sampler.LayerMode)
	case c.Sampler.Heads != "groups" && c.Sampler.Heads != "within":
		return fmt.Errorf("train: EST heads %q (want groups or within)", c.Sampler.Heads)
	case c.Sampler.Update != "dense" && c.Sampler.Update != "sampled":
		return fmt.Errorf("train: EST update %q (want dense or sampled)", c.Sampler.Update)
	case c.Model.MLP()%c.Sampler.Group != 0:
		return fmt.Errorf("train: neuron group %d does not divide the MLP width %d", c.Sampler.Group, c.Model.MLP())
	}
	if err := c.Model.Check(); err != nil {
		return err
	}
	if c.Schedule != nil {
		return c.Schedule.Check()
	}
	return nil
}

// LRAt is the learning rate of a step (0-based): linear warmup, then linear
// or cosine decay to MinLR at the last step.
func (c *Config) LRAt(step int) float64 {
	if step < c.Warmup {
		return c.LR * float64(step+1) / float64(c.Warmup)
	}
	if c.Steps <= c.Warmup+1 {
		return c.LR
	}
	frac := float64(step-c.Warmup) / float64(c.Steps-1-c.Warmup)
	if c.Decay == "cosine" {
		return c.MinLR + 0.5*(c.LR-c.MinLR)*(1+math.Cos(math.Pi*frac))
	}
	return c.LR + (c.MinLR-c.LR)*frac
}
