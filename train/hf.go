package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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

// LoadHF sets a model's parameters from a Hugging Face model.safetensors
// of its family's class (GPT2LMHeadModel for GPT-2, LlamaForCausalLM for
// Llama), as the family maps the names.
func LoadHF(m Model, path string) error {
	ts, shapes, err := readSafetensors(path)
	if err != nil {
		return fmt.Errorf("train: --init-from: %w", err)
	}
	c := m.Config()
	f, err := familyOf(c.Arch)
	if err != nil {
		return err
	}
	host := make([]float32, c.NumParams())
	if err := f.hf.load(c, m.Table(), path, ts, shapes, host); err != nil {
		return err
	}
	return m.SetParams(host)
}

// ExportHF writes dir/model.safetensors and dir/config.json that Hugging
// Face transformers loads as the model's family's class (GPT2LMHeadModel,
// LlamaForCausalLM).
//
// dir must be absent, empty, or hold only an earlier export's two files:
// anything else (a run directory above all, whose config.json the export's
// would replace) is refused, naming what is there.
func ExportHF(m Model, dir string) error {
	if err := checkExportDir(dir); err != nil {
		return err
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
	names, shapes, data := f.hf.export(c, m.Table(), host)
	if err := writeSafetensors(filepath.Join(dir, "model.safetensors"), names, shapes, data, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	b, err := json.MarshalIndent(f.hf.config(c), "", "  ")
	if err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	if err := durable.WriteFile(dir, "config.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// exportFiles are the files ExportHF writes.
var exportFiles = []string{"model.safetensors", "config.json"}

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
	for _, e := range ents {
		if !slices.Contains(exportFiles, strings.TrimPrefix(e.Name(), durable.TmpPrefix)) || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
			continue
		}
		if e.Name() != "config.json" {
			continue
		}
		// an earlier export's: a Hugging Face configuration of a model class export writes
		var c struct {
			Architectures []string `json:"architectures"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		if json.Unmarshal(b, &c) != nil || len(c.Architectures) != 1 || !slices.ContainsFunc(families, func(f *Family) bool { return f.hf.class == c.Architectures[0] }) {
			foreign = append(foreign, "config.json (not an export's)")
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("train: export: %s holds files export did not write (%s): give an empty or new directory", dir, describe(foreign))
	}
	return nil
}
