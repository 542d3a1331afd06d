package train

import (
	"fmt"
	"strings"

	"github.com/estkit/estkit/kernels"
)

// Family is one model architecture: everything about it that is not the
// shared decoder of layers.go, in one value. ModelConfig.Arch names it.
//
// Adding a family (docs/ARCHITECTURE.md, "Adding a family") is one file
// that defines its Family value, one line in families, and a PyTorch
// fixture. Its functions get everything they need as arguments and call
// no ModelConfig method that consults the registry (Table, Check, MLP,
// NumParams): families refers to them, so such a call would be an
// initialization cycle, which the compiler reports.
type Family struct {
	// Arch is ModelConfig.Arch's name for the family.
	Arch string
	// check validates the parts of a shape the family reads, after
	// ModelConfig.Check has validated the sizes every family shares.
	check func(c ModelConfig) error
	// ff is the MLP's width (its neurons).
	ff func(c ModelConfig) int
	// layout is the parameter table, in memory order, and the views the
	// passes read it through (recorded as the table is built, so that no
	// pass counts offsets).
	layout func(c ModelConfig) ([]Param, modelView)
	// What the shared decoder computes: the norm, whether q and k are
	// rotated (RoPE), and the MLP's nonlinearity. The embedding is
	// learned positions when the view has them, else the tokens alone.
	norm normKind
	rope bool
	mlp  mlpKind
	// blockFLOPs is one token's forward FLOPs through a block running nh
	// query heads, nkv key/value heads and ff neurons at context T (2 per
	// multiply-add; StepFLOPs adds the LM head and the backward pass).
	blockFLOPs func(c ModelConfig, nh, nkv, ff, T float64) float64
	// memory counts the parameters, one token's activations and scratch,
	// and the gathered weights, in values, as the passes allocate them
	// (EstimateMemory).
	memory func(c ModelConfig) (params, perToken, weights float64)
	// hf maps the table to the family's Hugging Face model.
	hf hfFamily
	// recipe adjusts the shared training recipe (Recipe) to the family's:
	// nil keeps it.
	recipe func(c *Config)
}

// hfFamily is a family's Hugging Face transformers model.
type hfFamily struct {
	// class is the model class config.json's "architectures" names.
	class string
	// modelType is config.json's "model_type".
	modelType string
	// load fills host (NumParams values, laid out by table) from the
	// checkpoint's tensors, and names the file and the tensor in its
	// errors.
	load func(c ModelConfig, table []Param, src *hfCheckpoint, host []float32) error
	// fields are config.json's shape fields, as the model has them: an
	// --init-from checkpoint's config.json must agree.
	fields func(c ModelConfig) []hfField
	// export lists the tensors of the Hugging Face model from host.
	export func(c ModelConfig, table []Param, host []float32) (names []string, shapes [][]int, data [][]float32)
	// config is the Hugging Face config.json.
	config func(c ModelConfig) map[string]any
}

// families is the registry of architectures, by ModelConfig.Arch; an
// empty Arch is the first, GPT-2 (configurations written before Arch
// existed).
var families = []*Family{&gpt2Family, &llamaFamily}

// familyOf is the family an architecture name selects.
func familyOf(arch string) (*Family, error) {
	if arch == "" {
		return families[0], nil
	}
	for _, f := range families {
		if f.Arch == arch {
			return f, nil
		}
	}
	return nil, fmt.Errorf("train: model architecture %q: known are %s", arch, strings.Join(Architectures(), ", "))
}

// Architectures are the names ModelConfig.Arch takes.
func Architectures() []string {
	names := make([]string, len(families))
	for i, f := range families {
		names[i] = f.Arch
	}
	return names
}

// family is c's family, or nil for an unknown Arch (which Check reports).
func (c ModelConfig) family() *Family {
	f, _ := familyOf(c.Arch)
	return f
}

// NewModel allocates the model cfg describes on ops with params (nil:
// zeros).
func NewModel(ops kernels.Ops, cfg ModelConfig, params []float32) (Model, error) {
	m, err := newModel(ops, cfg, params)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// InitModel allocates the model cfg describes on ops with InitParams(seed)
// as its parameters, uploaded a tensor at a time (no host copy of the whole
// model).
func InitModel(ops kernels.Ops, cfg ModelConfig, seed uint64) (Model, error) {
	m, err := newModel(ops, cfg, nil)
	if err != nil {
		return nil, err
	}
	cfg.initTensors(seed, func(e Param, x []float32) { ops.Upload(ops.Slice(m.params, e.Offset, e.Size), x) })
	m.paramsChanged()
	return m, nil
}
