package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/estkit/estkit/internal/durable"
)

// transpose is v [rows × cols] transposed.
func transpose(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

// hfCheckpoint is a Hugging Face checkpoint's tensors: one safetensors
// file, or the shards a model.safetensors.index.json names, each tensor
// read as it is asked for (so loading costs one tensor's memory beyond the
// model's).
type hfCheckpoint struct {
	path    string // what --init-from named
	files   []*stFile
	tensors map[string]hfTensor
	raw     []byte // read scratch
}

// hfTensor is where one tensor lies.
type hfTensor struct {
	file *stFile
	e    stEntry
}

// Hugging Face's file names in a model directory.
const (
	hfWeights = "model.safetensors"
	hfIndex   = "model.safetensors.index.json"
	hfConfig  = "config.json"
)

// openHF opens what --init-from names: a safetensors file, a sharded
// checkpoint's index, or a directory as Hugging Face lays a model out
// (model.safetensors or model.safetensors.index.json with its shards).
// It returns the checkpoint and the config.json beside it ("" when there
// is none).
func openHF(path string) (*hfCheckpoint, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s is not a regular file or a directory (%s): give a model directory or a safetensors file", path, st.Mode().Type())
	}
	dir, file := filepath.Dir(path), path
	if st.IsDir() {
		dir = path
		switch {
		case exists(filepath.Join(dir, hfIndex)):
			file = filepath.Join(dir, hfIndex)
		case exists(filepath.Join(dir, hfWeights)):
			file = filepath.Join(dir, hfWeights)
		default:
			return nil, "", fmt.Errorf("%s holds neither %s nor %s (a Hugging Face model directory?)", dir, hfWeights, hfIndex)
		}
	}
	cfg := filepath.Join(dir, hfConfig)
	if !exists(cfg) {
		cfg = ""
	}
	h := &hfCheckpoint{path: path, tensors: map[string]hfTensor{}}
	if strings.HasSuffix(file, ".json") {
		err = h.openIndex(file)
	} else {
		err = h.add(file)
	}
	if err != nil {
		h.Close()
		return nil, "", err
	}
	return h, cfg, nil
}

// regularFile refuses a path that is not a regular file (following
// links) before it is opened: opening a FIFO blocks, and a device such as
// /dev/zero reads without end.
func regularFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// add opens one safetensors file and adds its tensors; a tensor another
// file holds too is an error naming both.
func (h *hfCheckpoint) add(path string) error {
	if err := regularFile(path); err != nil { // a device or a FIFO would be read without end
		return err
	}
	s, err := openSafetensors(path)
	if err != nil {
		return err
	}
	h.files = append(h.files, s)
	for name, e := range s.entries {
		if t, ok := h.tensors[name]; ok {
			return fmt.Errorf("%w: tensor %s is in both %s and %s", ErrSafetensors, name, t.file.path, path)
		}
		h.tensors[name] = hfTensor{s, e}
	}
	return nil
}

// openIndex opens the shards a model.safetensors.index.json names: each
// must be a file beside the index, and each tensor of weight_map must be
// in the shard it names.
func (h *hfCheckpoint) openIndex(path string) error {
	if err := regularFile(path); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("%s: %w: %v", path, ErrSafetensors, err)
	}
	if len(idx.WeightMap) == 0 {
		return fmt.Errorf("%s: %w: no weight_map", path, ErrSafetensors)
	}
	var shards []string
	for name, f := range idx.WeightMap {
		if f == "" || f != filepath.Base(f) || f == "." || f == ".." || !strings.HasSuffix(f, ".safetensors") {
			return fmt.Errorf("%s: %w: tensor %s: %q is not a safetensors file beside the index", path, ErrSafetensors, name, f)
		}
		if !slices.Contains(shards, f) {
			shards = append(shards, f)
		}
	}
	sort.Strings(shards)
	dir := filepath.Dir(path)
	for _, f := range shards {
		p := filepath.Join(dir, f)
		if !exists(p) {
			return fmt.Errorf("%s names %s, which is missing", path, p)
		}
		if err := h.add(p); err != nil {
			return err
		}
	}
	names := slices.Sorted(maps.Keys(idx.WeightMap))
	for _, name := range names {
		want := filepath.Join(dir, idx.WeightMap[name])
		t, ok := h.tensors[name]
		if !ok || t.file.path != want {
			return fmt.Errorf("%s: %w: tensor %s is not in %s, where the index puts it", path, ErrSafetensors, name, want)
		}
	}
	return nil
}

// Close closes the checkpoint's files.
func (h *hfCheckpoint) Close() error {
	var errs []error
	for _, s := range h.files {
		errs = append(errs, s.f.Close())
	}
	return errors.Join(errs...)
}

// get reads a tensor as float32 with its shape; v is nil when the
// checkpoint has no tensor of that name.
func (h *hfCheckpoint) get(name string) (v []float32, shape []int, err error) {
	t, ok := h.tensors[name]
	if !ok {
		return nil, nil, nil
	}
	v = make([]float32, t.e.elems())
	if err := t.file.read(name, t.e, v, &h.raw); err != nil {
		return nil, nil, err
	}
	return v, t.e.Shape, nil
}

// file names the file a tensor is in, for errors (the checkpoint when it
// has none of that name).
func (h *hfCheckpoint) file(name string) string {
	if t, ok := h.tensors[name]; ok {
		return t.file.path
	}
	return h.path
}

// hfField is one shape field of a Hugging Face config.json, as the model
// has it: its key and value (a number, or text when text is set, or
// nothing when null: the model has no such feature; off: absent, null or
// false, a feature the model lacks), the value
// transformers assumes when the key is absent (def, or the value of
// defKey; neither: the field is not checked then), and whether a larger
// number is fine (a longer position table).
type hfField struct {
	key     string
	want    float64
	text    string
	null    bool
	off     bool
	def     any
	defKey  string
	atLeast bool
	ours    string // the model's name for it, for errors
}

// checkHFConfig checks a config.json against the model's shape: its class
// and every shape field the family lists; a mismatch names the field.
func checkHFConfig(path string, c ModelConfig, f *Family) error {
	if err := regularFile(path); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if mt, ok := raw["model_type"].(string); ok && mt != f.hf.modelType {
		return fmt.Errorf("%s: model_type %q, the model is %s (%s): %w", path, mt, f.hf.modelType, f.hf.class, ErrConfig)
	}
	for _, fl := range f.hf.fields(c) {
		v := raw[fl.key]
		if fl.null {
			if v != nil {
				return fmt.Errorf("%s: %s is %v; estkit's %s has no %s: %w", path, fl.key, v, f.hf.class, fl.ours, ErrConfig)
			}
			continue
		}
		if fl.off {
			if v != nil && v != false {
				return fmt.Errorf("%s: %s is %v; estkit's %s has no %s: %w", path, fl.key, v, f.hf.class, fl.ours, ErrConfig)
			}
			continue
		}
		if v == nil && fl.defKey != "" {
			v = raw[fl.defKey]
		}
		if v == nil {
			v = fl.def
		}
		if v == nil {
			continue
		}
		if fl.text != "" {
			if v != fl.text {
				return fmt.Errorf("%s: %s is %v, the model's %s %s: %w", path, fl.key, v, fl.ours, fl.text, ErrConfig)
			}
			continue
		}
		x, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: %s is %v, not a number: %w", path, fl.key, v, ErrConfig)
		}
		if x == fl.want || fl.atLeast && x >= fl.want {
			continue
		}
		rel := ""
		if fl.atLeast {
			rel = " or more"
		}
		return fmt.Errorf("%s: %s is %v, the model's %s %v%s (give the checkpoint's shape with --preset or --config): %w", path, fl.key, x, fl.ours, fl.want, rel, ErrConfig)
	}
	return nil
}

// LoadHF sets a model's parameters from a Hugging Face checkpoint of its
// family's class (GPT2LMHeadModel for GPT-2, LlamaForCausalLM for Llama),
// as the family maps the names: path is a safetensors file, a sharded
// checkpoint's model.safetensors.index.json, or a directory holding either
// (and config.json, which is checked against the model's shape). F32, BF16
// and F16 tensors are read, and converted exactly to float32.
func LoadHF(m Model, path string) error {
	c := m.Config()
	f, err := familyOf(c.Arch)
	if err != nil {
		return err
	}
	ck, cfg, err := openHF(path)
	if err != nil {
		return fmt.Errorf("train: --init-from: %w", err)
	}
	defer ck.Close()
	if cfg != "" {
		if err := checkHFConfig(cfg, c, f); err != nil {
			return fmt.Errorf("train: --init-from: %w", err)
		}
	}
	host := make([]float32, c.NumParams())
	if err := f.hf.load(c, m.Table(), ck, host); err != nil { // in PyTorch's layout
		return err
	}
	relayout(m.Table(), host, false)
	return m.SetParams(host)
}

// ExportOptions adjust ExportHF; the zero value writes fp32 weights, in
// shards of at most 5 GB, and no tokenizer.
type ExportOptions struct {
	// DType is the weights' type: "fp32" (also "") or "bf16" (rounded to
	// nearest, ties to even).
	DType string
	// MaxShardSize: weights of more bytes are written as shards of at
	// most this many bytes (a larger tensor alone in one) with
	// model.safetensors.index.json; 0 is 5 GB, Hugging Face's default.
	MaxShardSize int64
	// Files are written beside the model, by name (the tokenizer's:
	// tokenize.HFFiles).
	Files map[string][]byte
	// Special are the tokenizer's BOS and EOS ids for config.json and
	// generation_config.json (nil: none is named).
	Special *SpecialTokens
}

// SpecialTokens are a tokenizer's BOS and EOS ids (-1: none).
type SpecialTokens struct{ BOS, EOS int64 }

// DefaultMaxShardSize is Hugging Face's save_pretrained default, "5GB".
const DefaultMaxShardSize = 5_000_000_000

// ExportHF writes a Hugging Face model folder that transformers loads as
// the model's family's class (GPT2LMHeadModel, LlamaForCausalLM):
// config.json, generation_config.json, the weights (model.safetensors, or
// model-0000i-of-0000n.safetensors shards with model.safetensors.index.json)
// and o.Files.
//
// dir must be absent, empty, or hold only an earlier export's files:
// anything else (a run directory above all, whose config.json the export's
// would replace) is refused, naming what is there. An earlier export's
// files this one does not write (shards of another size) are removed.
func ExportHF(m Model, dir string, o ExportOptions) error {
	if err := checkExportDir(dir); err != nil {
		return err
	}
	dtype, torchDtype := "F32", "float32"
	switch o.DType {
	case "", "fp32":
	case "bf16":
		dtype, torchDtype = "BF16", "bfloat16"
	default:
		return fmt.Errorf("train: export: %w: dtype %q (want fp32 or bf16)", ErrConfig, o.DType)
	}
	if o.MaxShardSize < 0 {
		return fmt.Errorf("train: export: %w: max shard size %d", ErrConfig, o.MaxShardSize)
	}
	if o.MaxShardSize == 0 {
		o.MaxShardSize = DefaultMaxShardSize
	}
	for name := range o.Files {
		if !isExportFile(name) || name == hfConfig || name == hfGeneration || name == hfIndex || name == hfWeights || shardName.MatchString(name) {
			return fmt.Errorf("train: export: %q is not a tokenizer file an export writes", name)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	c := m.Config()
	f, err := familyOf(c.Arch)
	if err != nil {
		return err
	}
	host := make([]float32, c.NumParams())
	m.Ops().Download(host, m.Params())
	if err := m.Ops().Err(); err != nil {
		return err
	}
	relayout(m.Table(), host, true) // the families' mappings read PyTorch's layout
	names, shapes, data := f.hf.export(c, m.Table(), host)
	written, err := writeHFWeights(dir, names, shapes, data, dtype, o.MaxShardSize)
	if err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	cfg := f.hf.config(c)
	cfg["torch_dtype"] = torchDtype
	cfg[exportMarker] = exportFormat // what makes the folder an export of estkit's that a later export may replace
	gen := map[string]any{}
	cfg["bos_token_id"], cfg["eos_token_id"] = nil, nil
	if s := o.Special; s != nil {
		for k, id := range map[string]int64{"bos_token_id": s.BOS, "eos_token_id": s.EOS} {
			if id >= 0 {
				cfg[k], gen[k] = id, id
			}
		}
	}
	files := map[string]any{hfConfig: cfg, hfGeneration: gen}
	for _, name := range []string{hfGeneration, hfConfig} { // config.json last: it marks the folder an export's
		b, err := json.MarshalIndent(files[name], "", "  ")
		if err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		if err := durable.WriteFile(dir, name, append(b, '\n')); err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		written = append(written, name)
	}
	for _, name := range slices.Sorted(maps.Keys(o.Files)) {
		if err := durable.WriteFile(dir, name, o.Files[name]); err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		written = append(written, name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	for _, e := range ents { // an earlier export's, which checkExportDir vouched for
		if isExportFile(e.Name()) && !slices.Contains(written, e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("train: export: %w", err)
			}
		}
	}
	return nil
}

// exportMarker is the key of config.json that marks a folder as an export
// of estkit's (transformers keeps unknown keys of a configuration as
// attributes and otherwise ignores them); exportFormat its value.
const exportMarker, exportFormat = "estkit_export", "estkit.hf-export.v1"

// hfGeneration is the generation settings' file of a model folder.
const hfGeneration = "generation_config.json"

// writeHFWeights writes the tensors as model.safetensors, or, past
// maxShard bytes, as shards in order (a new one where the next tensor
// would overflow the current) with model.safetensors.index.json, and
// returns the names of the files written.
func writeHFWeights(dir string, names []string, shapes [][]int, data [][]float32, dtype string, maxShard int64) ([]string, error) {
	size := int64(stDtypes[dtype].size)
	var groups [][]int
	var cur, total int64
	for i := range names {
		n := size * int64(len(data[i]))
		if len(groups) == 0 || cur > 0 && cur+n > maxShard {
			groups, cur = append(groups, nil), 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], i)
		cur += n
		total += n
	}
	meta := map[string]string{"format": "pt"}
	src := func(g []int) []tensorSource {
		s := make([]tensorSource, len(g))
		for k, i := range g {
			d := data[i]
			s[k] = tensorSource{names[i], shapes[i], len(d), func(dst []float32) { copy(dst, d) }}
		}
		return s
	}
	if len(groups) == 1 {
		_, err := streamSafetensors(filepath.Join(dir, hfWeights), src(groups[0]), dtype, meta)
		return []string{hfWeights}, err
	}
	var written []string
	weightMap := map[string]string{}
	for k, g := range groups {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(groups))
		if _, err := streamSafetensors(filepath.Join(dir, file), src(g), dtype, meta); err != nil {
			return nil, err
		}
		written = append(written, file)
		for _, i := range g {
			weightMap[names[i]] = file
		}
	}
	b, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(dir, hfIndex, append(b, '\n')); err != nil {
		return nil, err
	}
	return append(written, hfIndex), nil
}

// shardName matches Hugging Face's shard file names.
var shardName = regexp.MustCompile(`^model-[0-9]{5}-of-[0-9]{5}\.safetensors$`)

// isExportFile: a file ExportHF writes.
func isExportFile(name string) bool {
	switch name {
	case hfWeights, hfIndex, hfConfig, hfGeneration, "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model":
		return true
	}
	return shardName.MatchString(name)
}

// checkExportDir refuses an export directory that holds anything an
// export did not write.
func checkExportDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	if s, err := surveyRun(dir); err == nil && s.holdsRun() {
		return fmt.Errorf("train: export: %s is a run directory: export writes a Hugging Face model into a directory of its own (its config.json would replace the run's)", dir)
	}
	var foreign []string
	hasConfig := false
	for _, e := range ents {
		if e.Name() == hfConfig {
			hasConfig = true
		}
		if !isExportFile(strings.TrimPrefix(e.Name(), durable.TmpPrefix)) || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
			continue
		}
		if e.Name() != "config.json" {
			continue
		}
		// an earlier export's: a Hugging Face configuration of a model class export writes
		var c struct {
			Architectures []string `json:"architectures"`
			Marker        string   `json:"estkit_export"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		if json.Unmarshal(b, &c) != nil || len(c.Architectures) != 1 || !slices.ContainsFunc(families, func(f *Family) bool { return f.hf.class == c.Architectures[0] }) {
			foreign = append(foreign, "config.json (not an export's)")
		} else if c.Marker != exportFormat {
			// a Hugging Face model of the user's (one --init-from read,
			// say): the same files an export writes, but not estkit's to
			// replace
			foreign = append(foreign, "config.json (a Hugging Face model that estkit did not export)")
		}
	}
	if len(foreign) == 0 && !hasConfig && slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return !strings.HasPrefix(e.Name(), durable.TmpPrefix) }) {
		foreign = append(foreign, "no config.json: not an earlier export")
	}
	if len(foreign) > 0 {
		return fmt.Errorf("train: export: %s holds files export did not write (%s): give an empty or new directory", dir, describe(foreign))
	}
	return nil
}
