package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/shards"
)

// Setting is one explicitly given option: a flag name of `estkit train`
// (without the dashes) and its text. Only what the user gave is a
// Setting, so a value equal to a default (--clip 0, --weight-decay 0) is
// still an override.
type Setting struct {
	Name, Value string
}

// Option describes one setting: its name, the kind of its value, its
// default (for help; some defaults depend on the model's family) and what
// it means.
type Option struct {
	Name, Kind, Default, Usage string
	// Resume: --resume accepts a new value for it.
	Resume bool
	apply  func(c *Config, v string) error
	key    string // its config.json key, when it sets one field
}

// Settings lists every setting Resolve accepts, in the order of help.
func Settings() []Option { return slices.Clone(options) }

// The settings that name a source rather than a field.
const (
	optPreset = "preset"
	optConfig = "config"
	optData   = "data"
)

var options []Option

func init() {
	intOpt := func(name, def, usage string, resume bool, p func(c *Config) *int) Option {
		return Option{Name: name, Kind: "int", Default: def, Usage: usage, Resume: resume, key: strings.ReplaceAll(name, "-", "_"),
			apply: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil {
					return fmt.Errorf("want a whole number")
				}
				*p(c) = n
				return nil
			}}
	}
	floatOpt := func(name, def, usage string, p func(c *Config) *float64) Option {
		return Option{Name: name, Kind: "float", Default: def, Usage: usage, key: strings.ReplaceAll(name, "-", "_"),
			apply: func(c *Config, v string) error {
				x, err := ParseFloat(v)
				if err != nil {
					return err
				}
				*p(c) = x
				return nil
			}}
	}
	textOpt := func(name, def, usage string, p func(c *Config) any) Option {
		return Option{Name: name, Kind: "string", Default: def, Usage: usage, key: strings.ReplaceAll(name, "-", "_"),
			apply: func(c *Config, v string) error {
				switch x := p(c).(type) {
				case *string:
					*x = v
					return nil
				case interface{ UnmarshalText([]byte) error }:
					return x.UnmarshalText([]byte(v))
				}
				panic("train: option " + name + " has no text field")
			}}
	}
	samplerText := func(name, def, usage string, p func(c *Config) *string, ok ...string) Option {
		o := textOpt(name, def, usage, func(c *Config) any { return p(c) })
		o.apply = func(c *Config, v string) error {
			if err := choice("", v, ok...); err != nil {
				return err
			}
			*p(c) = v
			return nil
		}
		return o
	}
	options = []Option{
		{Name: optPreset, Kind: "string", Default: "gpt2-tiny", Usage: "model preset: " + strings.Join(presetNames(), ", ")},
		{Name: optConfig, Kind: "string", Usage: "JSON configuration file (the fields of a run's config.json; unknown keys are errors)"},
		{Name: optData, Kind: "stringArray", Usage: "token shard set with an optional mixture weight: DIR or DIR:WEIGHT (repeatable; the text after the last ':' is the weight, so a directory whose name holds ':' is given as DIR:1)"},
		intOpt("steps", "100", "optimizer steps (with --resume: extends or shortens the run; the schedules keep the horizon the run started with)", true, func(c *Config) *int { return &c.Steps }),
		intOpt("batch", "4", "micro-batch size B", false, func(c *Config) *int { return &c.Batch }),
		intOpt("seq", "64", "sequence length T", false, func(c *Config) *int { return &c.Seq }),
		intOpt("accum", "1", "micro-batches per step (gradient accumulation)", false, func(c *Config) *int { return &c.Accum }),
		floatOpt("lr", "6e-4; Llama 4e-4", "peak learning rate (above 0)", func(c *Config) *float64 { return &c.LR }),
		floatOpt("min-lr", "lr/10", "final learning rate (0 to lr)", func(c *Config) *float64 { return &c.MinLR }),
		intOpt("warmup", "0", "warmup steps", false, func(c *Config) *int { return &c.Warmup }),
		textOpt("decay", "linear; Llama cosine", "learning-rate decay after warmup: linear or cosine", func(c *Config) any { return &c.Decay }),
		floatOpt("beta1", "0.9", "AdamW β1, in [0, 1)", func(c *Config) *float64 { return &c.Beta1 }),
		floatOpt("beta2", "0.95", "AdamW β2, in [0, 1)", func(c *Config) *float64 { return &c.Beta2 }),
		floatOpt("eps", "1e-8", "AdamW ε (above 0)", func(c *Config) *float64 { return &c.Eps }),
		floatOpt("weight-decay", "0.1", "AdamW weight decay of the matrices (0: none)", func(c *Config) *float64 { return &c.WeightDecay }),
		floatOpt("clip", "1", "clip the global gradient norm to this (0: off)", func(c *Config) *float64 { return &c.Clip }),
		textOpt("matmul", "fp32", "precision of the matrix products: fp32, or bf16 (inputs rounded to bfloat16, float32 accumulation; --device cuda)", func(c *Config) any { return &c.MatMul }),
		textOpt("attention", "fp32", "precision of attention's products, forward and backward: fp32, or bf16 (tensor cores, float32 softmax and accumulation; --device cuda)", func(c *Config) any { return &c.Attention }),
		textOpt("activations", "fp32", "how activations are stored: fp32, or bf16 (half the memory and memory traffic; every op computes in float32, the products read a bfloat16 copy of the weights; --device cuda)", func(c *Config) any { return &c.Activations }),
		{Name: "seed", Kind: "uint", Default: "0", Usage: "seed of initialisation, data order and subnetwork sampling", key: "seed",
			apply: func(c *Config, v string) error {
				n, err := strconv.ParseUint(v, 0, 64)
				if err != nil {
					return fmt.Errorf("want a whole number from 0 to %d", uint64(math.MaxUint64))
				}
				c.Seed = n
				return nil
			}},
		textOpt("order", "shuffle", "data order: shuffle or sequential", func(c *Config) any { return &c.Order }),
		textOpt("init-from", "", "start from Hugging Face weights (GPT2LMHeadModel or LlamaForCausalLM, as the model): a model directory (config.json checked against the model's shape), a model.safetensors or a sharded checkpoint's model.safetensors.index.json; F32, BF16 or F16", func(c *Config) any { return &c.InitFrom }),
		{Name: "est", Kind: "string", Default: "off", Usage: "EST schedule: a preset (" + strings.Join(estPresetNames(), ", ") + ", stage ends scaled to --steps) or off", key: "est",
			apply: func(c *Config, v string) error {
				if _, ok := ESTPresets[v]; !ok && v != "off" && v != "custom" {
					return fmt.Errorf("want %s, or off (custom: --est-stages and --est-rates)", strings.Join(estPresetNames(), ", "))
				}
				c.EST, c.Schedule = v, nil // a preset's schedule is derived once the steps are known
				return nil
			}},
		{Name: "est-stages", Kind: "string", Usage: "custom EST stage ends in steps, e.g. 100,300,600 (with --est-rates; none past --steps, and steps after the last end train in the last stage)", key: "schedule"},
		{Name: "est-rates", Kind: "string", Usage: "custom EST rates per stage, pH:pM:pL, e.g. 0.5:0.5:0.5,0.5:0.5:1,1:1:1 (with --est-stages)", key: "schedule"},
		samplerText("layer-mode", "fixed", "sampled blocks: fixed (exactly round(L·pL)) or bernoulli", func(c *Config) *string { return &c.Sampler.LayerMode }, LayerModeFixed, LayerModeBernoulli),
		{Name: "shared", Kind: "bool", Default: "false", Usage: "every block uses the same sampled heads and neurons", key: "sampler",
			apply: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("want true or false")
				}
				c.Sampler.Shared = b
				return nil
			}},
		intOpt("neuron-group", "1", "sample MLP neurons in groups of this many (a divisor of the MLP width)", false, func(c *Config) *int { return &c.Sampler.Group }),
		samplerText("est-heads", "groups", "with grouped-query attention, sample whole key/value groups (groups) or query heads within every group (within)", func(c *Config) *string { return &c.Sampler.Heads }, "groups", "within"),
		samplerText("est-update", "dense", "AdamW on unsampled heads and neurons: dense (zero gradient, still moved by momentum and decay) or sampled (left as they are)", func(c *Config) *string { return &c.Sampler.Update }, "dense", "sampled"),
		textOpt("sample-every", "step", "draw a subnetwork per optimizer step or per microbatch", func(c *Config) any { return &c.SampleEvery }),
		intOpt("eval-every", "0", "val loss every N steps, and always at the end (0: at the end only)", true, func(c *Config) *int { return &c.EvalEvery }),
		intOpt("eval-batches", "4", "batches of the val split per evaluation (0: no evaluation, and no val split needed)", true, func(c *Config) *int { return &c.EvalBatches }),
		intOpt("checkpoint-every", "0", "checkpoint every N steps, and always at the end (0: at the end only)", true, func(c *Config) *int { return &c.CheckpointEvery }),
		intOpt("keep-checkpoints", "2", "checkpoints to keep (the latest ones)", true, func(c *Config) *int { return &c.KeepCheckpoints }),
	}
	// The sampler's integer and the keys of sampler options are tracked
	// under the sampler; nothing derived depends on them.
	for i := range options {
		switch options[i].Name {
		case "layer-mode", "neuron-group", "est-heads", "est-update":
			options[i].key = "sampler"
		}
	}
}

func presetNames() []string {
	var n []string
	for k := range Presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func option(name string) (*Option, error) {
	for i := range options {
		if options[i].Name == name {
			return &options[i], nil
		}
	}
	return nil, fmt.Errorf("train: %w: no option --%s", ErrConfig, name)
}

// Resolve builds a new run's configuration from explicit settings: the
// model preset's shape (--preset, the file's "preset", or gpt2-tiny) or
// the file's "model"; then the training recipe of the model's family
// (Recipe); then the --config file's keys; then the other settings in
// order. min_lr is a tenth of lr unless given; an EST preset's schedule is
// derived from the steps. The result is checked.
func Resolve(set []Setting) (Config, error) {
	var preset, file string
	presetGiven := false
	for _, s := range set {
		switch s.Name {
		case optPreset:
			preset, presetGiven = s.Value, true
		case optConfig:
			file = s.Value
		}
	}
	var raw []byte
	keys := map[string]bool{}
	if file != "" {
		b, err := readConfigFile(file)
		if err != nil {
			return Config{}, err
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(b, &top); err != nil {
			return Config{}, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, jsonError(b, err))
		}
		if top == nil {
			return Config{}, fmt.Errorf("train: %w: %s: want a JSON object", ErrConfig, file)
		}
		if _, ok := top["format"]; ok { // a run's config.json: its marker checked, then set aside
			if err := runConfigMarker(file, b); err != nil {
				return Config{}, err
			}
			delete(top, "format")
			delete(top, "version")
			if b, err = json.Marshal(top); err != nil {
				return Config{}, fmt.Errorf("train: %s: %w", file, err)
			}
		}
		for k := range top {
			keys[k] = true // spelled as config.json does (checkConfigJSON)
		}
		raw = b
	}
	cfg, err := resolveShape(raw, keys, preset, presetGiven, file)
	if err != nil {
		return Config{}, err
	}
	estFlags := map[string]string{}
	dataFromFlags := false
	for _, s := range set {
		switch s.Name {
		case optPreset, optConfig:
			continue
		case optData:
			d, err := ParseData(s.Value)
			if err != nil {
				return Config{}, &SettingError{s.Name, err}
			}
			if !dataFromFlags {
				cfg.Data, dataFromFlags = nil, true // the flags' mixture replaces the file's
			}
			cfg.Data = append(cfg.Data, d)
			continue
		case "est", "est-stages", "est-rates":
			if _, dup := estFlags[s.Name]; dup && s.Name != "est" {
				return Config{}, fmt.Errorf("train: %w: --%s given twice", ErrConfig, s.Name)
			}
			estFlags[s.Name] = s.Value
		}
		o, err := option(s.Name)
		if err != nil {
			return Config{}, err
		}
		if o.apply != nil {
			if err := o.apply(&cfg, s.Value); err != nil {
				return Config{}, settingError(s, err)
			}
		}
		keys[o.key] = true
	}
	stages, hasStages := estFlags["est-stages"]
	rates, hasRates := estFlags["est-rates"]
	switch est, hasEST := estFlags["est"]; {
	case (hasStages || hasRates) && hasEST && est != "custom":
		return Config{}, fmt.Errorf("train: %w: --est %s and --est-stages/--est-rates: give one schedule", ErrConfig, est)
	case hasStages || hasRates:
		s, err := ParseSchedule(stages, rates)
		if err != nil {
			return Config{}, fmt.Errorf("%w (--est-stages %q --est-rates %q; %w)", err, stages, rates, ErrConfig)
		}
		cfg.EST, cfg.Schedule = "custom", &s
	}
	if err := absData(cfg.Data); err != nil {
		return Config{}, err
	}
	if !keys["min_lr"] {
		cfg.MinLR = cfg.LR / 10
	}
	if p, ok := ESTPresets[cfg.EST]; ok && cfg.Schedule == nil && p.Check() == nil && cfg.horizon() > 0 {
		s := p.Scaled(cfg.horizon())
		cfg.Schedule = &s
	}
	cfg.Defaults()
	if err := cfg.Check(); err != nil {
		if file != "" {
			return Config{}, fmt.Errorf("%w (with --config %s)", err, file)
		}
		return Config{}, err
	}
	return cfg, nil
}

// resolveShape picks the model's shape and returns the family's recipe
// with the file's keys over it.
func resolveShape(raw []byte, keys map[string]bool, preset string, presetGiven bool, file string) (Config, error) {
	var fileCfg struct {
		Preset string          `json:"preset"`
		Model  json.RawMessage `json:"model"`
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &fileCfg); err != nil {
			return Config{}, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, jsonError(raw, err))
		}
	}
	var model ModelConfig
	name := preset
	if keys["model"] {
		if presetGiven {
			return Config{}, fmt.Errorf("train: %w: --preset %s and the model of %s both give the shape: give one", ErrConfig, preset, file)
		}
		if err := strictDecode(fileCfg.Model, &model); err != nil {
			return Config{}, fmt.Errorf("train: %w: %s: model: %w", ErrConfig, file, jsonError(nil, err))
		}
		// A model that leaves "padded" out gets its vocabulary padded as
		// the presets pad it; one that gives it keeps it, to be checked
		// as given (0 or below vocab is an error, not a request).
		var mkeys map[string]json.RawMessage
		if err := json.Unmarshal(fileCfg.Model, &mkeys); err != nil {
			return Config{}, fmt.Errorf("train: %w: %s: model: %w", ErrConfig, file, jsonError(nil, err))
		}
		_, given := mkeys["padded"]
		if _, legacy := mkeys["Padded"]; !given && !legacy && model.Vocab > 0 && model.Vocab <= maxSize {
			model.Padded = paddedVocab(model.Vocab)
		}
		name = fileCfg.Preset
		if p, ok := Presets[name]; !ok || p != model {
			name = "" // the shape is the file's own
		}
	} else {
		if !presetGiven && fileCfg.Preset != "" {
			name = fileCfg.Preset
		}
		if name == "" {
			name = "gpt2-tiny"
		}
		p, ok := Presets[name]
		if !ok {
			err := fmt.Errorf("train: %w: no model preset %q (want %s)", ErrConfig, name, strings.Join(presetNames(), ", "))
			if presetGiven {
				return Config{}, &SettingError{optPreset, err}
			}
			return Config{}, err
		}
		model = p
	}
	cfg := Recipe(model)
	if raw != nil {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return Config{}, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, jsonError(raw, err))
		}
	}
	cfg.Model, cfg.Preset = model, name
	return cfg, nil
}

// maxConfigFile caps a --config file's size: a configuration is a few
// kilobytes, and a mistaken path (a corpus, a device) must not be read
// whole.
const maxConfigFile = 1 << 20

// readConfigFile reads a --config file: a regular file (a FIFO would
// block the open, a device read without end) of at most maxConfigFile
// bytes.
func readConfigFile(file string) ([]byte, error) {
	if err := regularFile(file); err != nil {
		return nil, fmt.Errorf("train: %w: --config: %w", ErrConfig, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("train: --config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("train: --config: %s: %w", file, err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("train: %w: --config: %s is larger than %d bytes (1 MiB): not a configuration file", ErrConfig, file, maxConfigFile)
	}
	// A UTF-8 byte order mark, which some editors write, is no part of
	// the JSON (RFC 8259 lets a parser ignore it; encoding/json does not).
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	if err := checkConfigJSON(b, false); err != nil {
		return nil, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, err)
	}
	return b, nil
}

// jsonError is a decoding error of the JSON b (nil: unknown) as the user
// can act on it: the key by its JSON name (not Go's "struct field
// plain.lr") and where a syntax error is, by line and column.
func jsonError(b []byte, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		want := te.Type.Kind().String()
		switch k := te.Type.Kind(); {
		case k >= reflect.Int && k <= reflect.Float64:
			want = "number"
		case k == reflect.Struct || k == reflect.Map:
			want = "object"
		case k == reflect.Slice:
			want = "array"
		}
		if te.Field == "" {
			return fmt.Errorf("a JSON %s where a %s belongs%s", te.Value, want, where(b, te.Offset))
		}
		return fmt.Errorf("key %q: a JSON %s where a %s belongs%s", jsonPath(te.Field), te.Value, want, where(b, te.Offset))
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON%s: %s", where(b, se.Offset), strings.TrimPrefix(se.Error(), "json: "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// where is " at line L, column C" of the byte offset off in b, or " at
// byte off" when b is not known.
func where(b []byte, off int64) string {
	if b == nil || off <= 0 || off > int64(len(b)) {
		return fmt.Sprintf(" at byte %d", off)
	}
	head := b[:off]
	line := 1 + bytes.Count(head, []byte("\n"))
	col := off - int64(bytes.LastIndexByte(head, '\n'))
	return fmt.Sprintf(" at line %d, column %d", line, col)
}

func settingError(s Setting, err error) error {
	if ce := (*choiceError)(nil); errors.As(err, &ce) {
		return &SettingError{s.Name, fmt.Errorf("train: %w: --%s %s: want %s", ErrConfig, s.Name, s.Value, choices(ce.ok))}
	}
	if errors.Is(err, ErrConfig) {
		return &SettingError{s.Name, fmt.Errorf("train: --%s %s: %w", s.Name, s.Value, err)}
	}
	return &SettingError{s.Name, fmt.Errorf("train: %w: --%s %s: %w", ErrConfig, s.Name, s.Value, err)}
}

// SettingError is a setting whose value does not parse or is not one of
// its choices (ErrConfig): the command line's own mistake, which the
// command reports as a usage error.
type SettingError struct {
	Name string // the setting (flag) name
	Err  error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// ParseData reads a --data value: DIR, or DIR:WEIGHT where WEIGHT is the
// text after the last ':'. That text must be a positive finite number, so a
// mistyped weight is an error rather than a directory of that name; a
// directory whose name holds ':' is given with its weight (DIR:1).
func ParseData(v string) (Data, error) {
	// a URL's scheme ("s3://") holds a ':' that is not a weight's
	scheme := 0
	if store.IsURL(v) {
		scheme = strings.Index(v, "://") + len("://")
	}
	i := strings.LastIndexByte(v[scheme:], ':')
	if i >= 0 {
		i += scheme
	}
	if i < 0 {
		if v == "" {
			return Data{}, fmt.Errorf("train: %w: --data \"\": want DIR or DIR:WEIGHT", ErrConfig)
		}
		return Data{Dir: v, Weight: 1}, nil
	}
	dir, ws := v[:i], v[i+1:]
	w, err := strconv.ParseFloat(ws, 64)
	switch {
	case dir == "":
		return Data{}, fmt.Errorf("train: %w: --data %q: no directory before the weight", ErrConfig, v)
	case err == nil && underflows(ws, w):
		return Data{}, fmt.Errorf("train: %w: --data %q: weight %s underflows: %s", ErrConfig, v, ws, underflowWant)
	case err != nil || !(w > 0) || math.IsInf(w, 0):
		return Data{}, fmt.Errorf("train: %w: --data %q: weight %q is not a positive number (the text after the last ':' is the weight; a directory whose name holds ':' is given as %s:1)", ErrConfig, v, ws, v)
	}
	return Data{Dir: dir, Weight: w}, nil
}

// absData records each data set by its absolute path, so that eval,
// sample and resume from another directory read the run's sets and not
// sets of the same relative name there, and refuses a set given twice
// (it would train at twice its weight).
func absData(data []Data) error {
	seen := map[string]int{}
	for i := range data {
		d := &data[i]
		if d.Dir != "" && !store.IsURL(d.Dir) {
			a, err := filepath.Abs(d.Dir)
			if err != nil {
				return fmt.Errorf("train: data %s: %w", d.Dir, err)
			}
			d.Dir = a
		}
		if j, dup := seen[d.Dir]; dup {
			return fmt.Errorf("train: %w: data set %s given twice (as entries %d and %d of the mixture): give each set once, with its weight", ErrConfig, d.Dir, j+1, i+1)
		}
		seen[d.Dir] = i
	}
	return nil
}

// ResolveResume is the configuration of resuming the run in dir: its
// config.json (checked against its latest checkpoint), with the settings
// that checkpoint's run was last resumed with, then the settings given
// that --resume accepts (Option.Resume); any other setting is refused, by
// name. When the steps change, the schedules keep the horizon the run
// started with (Config.Horizon).
func ResolveResume(dir string, set []Setting) (Config, error) {
	base, err := ReadRunConfig(dir)
	if err != nil {
		return Config{}, err
	}
	cfg := *base
	if r, err := latestSettings(dir); err != nil {
		return Config{}, err
	} else if r != nil {
		r.apply(&cfg)
	}
	refused, err := changedSettings(&cfg, set)
	if err != nil {
		return Config{}, err
	}
	for _, s := range set {
		o, err := option(s.Name)
		if err != nil {
			return Config{}, err
		}
		if !o.Resume {
			continue
		}
		if err := o.apply(&cfg, s.Value); err != nil {
			return Config{}, settingError(s, err)
		}
	}
	if len(refused) > 0 {
		var ok []string
		for _, o := range options {
			if o.Resume {
				ok = append(ok, "--"+o.Name)
			}
		}
		return Config{}, fmt.Errorf("train: %w: --resume continues %s as configured: %s cannot change (only %s can; start a new run for the others)",
			ErrConfig, dir, strings.Join(refused, "; "), strings.Join(ok, ", "))
	}
	if cfg.Steps != base.Steps {
		cfg.Horizon = base.horizon()
	}
	if err := cfg.Check(); err != nil {
		return Config{}, fmt.Errorf("%w (resuming %s)", err, dir)
	}
	return cfg, nil
}

// changedSettings names the settings of set that --resume cannot change
// whose resolved value differs from the run's cfg: each is applied to a
// copy of cfg and the config.json keys it sets compared, so that the
// command that started the run, given again with --resume, is accepted.
func changedSettings(cfg *Config, set []Setting) ([]string, error) {
	var refused []string
	var data []Data
	dataGiven, dataAt := false, 0
	var dataText []string
	for _, s := range set {
		o, err := option(s.Name)
		if err != nil {
			return nil, err
		}
		if o.Resume {
			continue
		}
		x := *cfg
		var keys []string
		switch s.Name {
		case optPreset:
			p, ok := Presets[s.Value]
			if !ok || p != cfg.Model {
				run := "the run's preset is " + cfg.Preset
				if cfg.Preset == "" {
					run = "the run's model, from no preset, is " + shown(fields(cfg)["model"])
				}
				refused = append(refused, "--"+s.Name+" "+s.Value+" ("+run+")")
			}
			continue
		case optData:
			d, err := ParseData(s.Value)
			if err != nil {
				return nil, err
			}
			if !dataGiven {
				dataAt = len(refused) // named in the order given
			}
			data, dataGiven = append(data, d), true
			dataText = append(dataText, s.Value)
			continue
		case optConfig:
			if keys, err = applyConfigFile(&x, s.Value); err != nil {
				return nil, err
			}
		case "est-stages", "est-rates":
			var stages, rates string
			for _, t := range set {
				switch t.Name {
				case "est-stages":
					stages = t.Value
				case "est-rates":
					rates = t.Value
				}
			}
			sch, err := ParseSchedule(stages, rates)
			if err != nil {
				return nil, fmt.Errorf("%w (--est-stages %q --est-rates %q; %w)", err, stages, rates, ErrConfig)
			}
			if cfg.Schedule != nil { // config.json also holds the realised rates, computed at start
				sch.Realised = cfg.Schedule.Realised
			}
			x.EST, x.Schedule, keys = "custom", &sch, []string{"est", "schedule"}
		default:
			if err := o.apply(&x, s.Value); err != nil {
				return nil, settingError(s, err)
			}
			keys = []string{o.key}
			if s.Name == "est" {
				keys = []string{"est"} // the schedule follows from it and the steps
			}
		}
		if diff := differ(cfg, &x, keys); len(diff) > 0 {
			sort.Strings(diff)
			fa, fx := fields(cfg), fields(&x)
			var was []string
			for _, k := range diff {
				run, its := shown(fa[k]), shown(fx[k])
				if k == "schedule" { // stages and rates, not the schedule's JSON
					run, its = scheduleShown(cfg.Schedule), scheduleShown(x.Schedule)
				}
				if s.Name == optConfig {
					was = append(was, "its "+k+" is "+its+", the run's "+run)
				} else {
					was = append(was, "the run's "+k+" is "+run)
				}
			}
			refused = append(refused, "--"+s.Name+" "+s.Value+" ("+strings.Join(was, "; ")+")")
		}
	}
	if dataGiven {
		if err := absData(data); err != nil {
			return nil, err
		}
		same := len(data) == len(cfg.Data)
		for i := 0; same && i < len(data); i++ {
			dir := cfg.Data[i].Dir
			if !store.IsURL(dir) {
				dir, _ = filepath.Abs(dir) // a run from before dirs were recorded absolute
			}
			same = data[i].Dir == dir && data[i].Weight == cfg.Data[i].Weight
		}
		if !same {
			var run []string
			for _, d := range cfg.Data {
				run = append(run, d.Dir+":"+strconv.FormatFloat(d.Weight, 'g', -1, 64))
			}
			what := "--" + optData + " " + strings.Join(dataText, " --"+optData+" ") + " (the run's data is " + strings.Join(run, ", ") + ")"
			refused = slices.Insert(refused, dataAt, what)
		}
	}
	return refused, nil
}

// applyConfigFile decodes the --config file over x as Resolve does and
// returns the config.json keys it gives, but those --resume may change
// (which the flags, not the file, give on a resume).
func applyConfigFile(x *Config, file string) ([]string, error) {
	b, err := readConfigFile(file)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, jsonError(b, err))
	}
	delete(top, "format")
	delete(top, "version")
	var keys []string
	for k := range top {
		switch k {
		case "steps", "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints", "ranks", "global_batch", "horizon":
			delete(top, k)
		default:
			keys = append(keys, k)
		}
	}
	rest, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", file, err)
	}
	if err := x.UnmarshalJSON(rest); err != nil {
		return nil, fmt.Errorf("train: %w: %s: %w", ErrConfig, file, jsonError(nil, err))
	}
	if _, ok := top["model"]; !ok && x.Preset != "" {
		if p, ok := Presets[x.Preset]; ok {
			x.Model = p
			keys = append(keys, "model")
		}
	}
	if err := absData(x.Data); err != nil {
		return nil, err
	}
	return keys, nil
}

// differ names the keys whose config.json values differ between a and b;
// a data set's key is not compared (b's are not yet read). A float
// setting differs only where it differs as float32, the precision the
// optimizer computes in: min_lr's default lr/10 (5.9999999999999995e-05
// for lr 6e-4) and a given 6e-5 train alike, and the run keeps its own
// value, so the resume stays exact.
func differ(a, b *Config, keys []string) []string {
	fa, fb := fields(a), fields(b)
	floats := floatKeys()
	var d []string
	for _, k := range keys {
		if string(fa[k]) == string(fb[k]) {
			continue
		}
		if floats[k] {
			x, errx := strconv.ParseFloat(string(fa[k]), 64)
			y, erry := strconv.ParseFloat(string(fb[k]), 64)
			if errx == nil && erry == nil && float32(x) == float32(y) {
				continue
			}
		}
		d = append(d, k)
	}
	return d
}

// floatKeys are the config.json keys of Config's float64 settings (lr,
// min_lr, AdamW's and clip), found in the struct so a new one is not
// missed.
func floatKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			switch {
			case f.Anonymous && f.Type.Kind() == reflect.Struct:
				walk(f.Type)
			case f.Type.Kind() == reflect.Float64:
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				keys[name] = true
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	return keys
}

// shown is a config.json value as a refusal quotes it: a string without
// its quotes, a float in Go's shortest form (as the flag would give it,
// 5.9999999999999995e-05 where JSON writes 0.000059999999999999995),
// anything else as encoded.
// scheduleShown is an EST schedule as the flags give it.
func scheduleShown(s *Schedule) string {
	if s == nil {
		return "none"
	}
	var ends, rates []string
	for i, e := range s.Ends {
		ends = append(ends, strconv.Itoa(e))
		rates = append(rates, s.Rates[i].String())
	}
	return "stages " + strings.Join(ends, ",") + " at rates " + strings.Join(rates, ",")
}

func shown(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if f, err := strconv.ParseFloat(string(v), 64); err == nil && bytes.ContainsAny(v, ".eE") {
		return strconv.FormatFloat(f, 'g', -1, 32) // as the optimizer holds it: 6e-05, not 5.9999999999999995e-05
	}
	if v == nil {
		return "absent"
	}
	return string(v)
}

// fields is c's config.json encoding by key, its data without keys.
func fields(c *Config) map[string]json.RawMessage {
	x := *c
	x.Data = slices.Clone(c.Data)
	for i := range x.Data {
		x.Data[i].Key = ""
	}
	b, _, err := x.encode()
	var m map[string]json.RawMessage
	if err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

// Resumable are the settings a resume may change. config.json keeps the
// values the run started with and is never rewritten; each checkpoint's
// state records the values in force when it was written.
type Resumable struct {
	Steps           int `json:"steps"`
	EvalEvery       int `json:"eval_every"`
	EvalBatches     int `json:"eval_batches"`
	CheckpointEvery int `json:"checkpoint_every"`
	KeepCheckpoints int `json:"keep_checkpoints"`
	// Ranks is the data-parallel processes (0: one): a checkpoint resumes
	// on another number of processes (docs/SCALING.md, "Resuming").
	Ranks int `json:"ranks,omitempty"`
}

func resumableOf(c *Config) Resumable {
	return Resumable{c.Steps, c.EvalEvery, c.EvalBatches, c.CheckpointEvery, c.KeepCheckpoints, c.Ranks}
}

func (r Resumable) apply(c *Config) {
	c.Steps, c.EvalEvery, c.EvalBatches, c.CheckpointEvery, c.KeepCheckpoints = r.Steps, r.EvalEvery, r.EvalBatches, r.CheckpointEvery, r.KeepCheckpoints
	c.Ranks, c.GlobalBatch = r.Ranks, 0
	c.GlobalBatch = c.globalBatch()
}

// latestSettings are the settings the run in dir had at its latest
// checkpoint (nil when it has none): its manifest and state.json checked
// as every reader of a checkpoint checks them.
func latestSettings(dir string) (*Resumable, error) {
	if _, err := os.Lstat(filepath.Join(dir, ckptDir, latestName)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // Run refuses to resume it, saying none was written
	}
	ck, err := latestCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	m, err := readLatestManifest(dir, ck)
	if err != nil {
		return nil, err
	}
	mpath := filepath.Join(ck, checkpointManifest)
	for _, f := range m.Files {
		if f.Name != "state.json" {
			continue
		}
		spath := filepath.Join(ck, f.Name)
		if err := verifyFile(spath, f, mpath); err != nil {
			return nil, withRecovery(dir, ck, err)
		}
		b, err := os.ReadFile(spath)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		var st runState
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, withRecovery(dir, ck, fmt.Errorf("train: %s: %w: %v", spath, ErrCorrupt, err))
		}
		return st.Settings, nil
	}
	return nil, withRecovery(dir, ck, fmt.Errorf("train: %s: %w: lists no state.json", mpath, ErrCorrupt))
}

// configDiff names the config.json keys whose values differ.
func configDiff(a, b *Config) []string {
	var ma, mb map[string]json.RawMessage
	ja, _, _ := a.encode()
	jb, _, _ := b.encode()
	json.Unmarshal(ja, &ma)
	json.Unmarshal(jb, &mb)
	var d []string
	for k, v := range ma {
		if string(v) != string(mb[k]) {
			d = append(d, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// checkValSplit refuses, before any step, a first data set whose val
// split cannot give one evaluation window: a run evaluates at its end,
// unless eval_batches is 0.
func checkValSplit(data []shards.Weighted, cfg *Config) error {
	if cfg.EvalBatches == 0 {
		return nil
	}
	const remedy = "reshard with a larger --val-fraction, or give --eval-batches 0 to train without evaluation"
	s := data[0].Set
	st, err := s.Stream(shards.Val)
	if err != nil {
		return fmt.Errorf("%w; the run evaluates on it (%s)", err, remedy)
	}
	if (st.Tokens-1)/int64(cfg.Seq) <= 0 {
		return fmt.Errorf("train: %s: the val split holds %d tokens, fewer than one sequence of seq+1 = %d; the run evaluates on it at the end (%s)",
			s.Dir, st.Tokens, cfg.Seq+1, remedy)
	}
	return nil
}

// groups are the names of Config's embedded groups (Batching, Optimizer,
// ...), which encoding/json puts in an error's field path although
// config.json has no such key.
var groups = func() map[string]bool {
	g := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous {
			g[f.Name] = true
		}
	}
	return g
}()

// jsonPath is a decoding error's field path as config.json spells it.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if !groups[p] {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}
