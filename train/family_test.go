package train

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFamiliesMatchPyTorch: every family of the registry has a PyTorch
// fixture of its full model (testdata/ARCH-full.json), and every fixture
// named after a family (testdata/ARCH-*.json) matches: single-selection
// fixtures as TestGPT2MatchesPyTorch compares them, step sequences
// ({"steps": ...}) as TestAdamWStepCountsMatchPyTorch does. A new family
// and its fixtures are picked up here without a change to this test.
func TestFamiliesMatchPyTorch(t *testing.T) {
	for _, f := range families {
		paths, err := filepath.Glob(filepath.Join("testdata", f.Arch+"-*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join("testdata", f.Arch+"-full.json")); err != nil {
			t.Errorf("family %s has no PyTorch fixture of its full model: %v", f.Arch, err)
		}
		for _, p := range paths {
			name := strings.TrimSuffix(filepath.Base(p), ".json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var probe struct {
				Steps  json.RawMessage `json:"steps"`
				Config struct {
					Arch string `json:"arch"`
				} `json:"config"`
			}
			if err := json.Unmarshal(b, &probe); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if a := probe.Config.Arch; a != f.Arch && (a != "" || f != families[0]) {
				continue // another family's whose name begins alike
			}
			t.Run(name, func(t *testing.T) {
				if probe.Steps != nil {
					matchSteps(t, name)
					return
				}
				matchFixture(t, name)
			})
		}
	}
}

// TestFamilyViews: a family's views name every tensor of its table once
// (the head may be the tied token embedding), each block's views name
// tensors of that block, and the table lays the flat buffer out without
// gaps.
func TestFamilyViews(t *testing.T) {
	for _, f := range families {
		cfg := ModelConfig{Arch: f.Arch, Vocab: 61, Padded: 64, Layers: 3, Heads: 4, KVHeads: 2, Channels: 16, FF: 24, MaxT: 8, RopeTheta: 10000, NormEps: 1e-5}
		if f.check(cfg) != nil {
			cfg.KVHeads = 0
		}
		if err := cfg.Check(); err != nil {
			t.Fatalf("%s: %v", f.Arch, err)
		}
		table, v := f.layout(cfg)
		seen := make([]int, len(table))
		name := func(i, layer int, what string) {
			if i < 0 {
				return
			}
			if i >= len(table) {
				t.Fatalf("%s: %s names tensor %d of %d", f.Arch, what, i, len(table))
			}
			if table[i].Layer != layer {
				t.Errorf("%s: %s names %s of layer %d, want layer %d", f.Arch, what, table[i].Name, table[i].Layer, layer)
			}
			seen[i]++
		}
		name(v.tokens, -1, "tokens")
		name(v.positions, -1, "positions")
		name(v.norm.w, -1, "norm")
		name(v.norm.b, -1, "norm bias")
		if v.head != v.tokens {
			name(v.head, -1, "head")
		}
		if len(v.blocks) != cfg.Layers {
			t.Fatalf("%s: %d block views for %d layers", f.Arch, len(v.blocks), cfg.Layers)
		}
		for l, b := range v.blocks {
			for _, n := range []struct {
				i    int
				what string
			}{{b.norm1.w, "norm1"}, {b.norm1.b, "norm1 bias"}, {b.qkv.w, "qkv"}, {b.qkv.b, "qkv bias"}, {b.proj.w, "proj"}, {b.proj.b, "proj bias"},
				{b.norm2.w, "norm2"}, {b.norm2.b, "norm2 bias"}, {b.up.w, "up"}, {b.up.b, "up bias"}, {b.down.w, "down"}, {b.down.b, "down bias"}} {
				name(n.i, l, n.what)
			}
		}
		off := 0
		for i, e := range table {
			if seen[i] != 1 {
				t.Errorf("%s: %s is named by %d views, want 1", f.Arch, e.Name, seen[i])
			}
			if e.Offset != off {
				t.Errorf("%s: %s at offset %d, want %d", f.Arch, e.Name, e.Offset, off)
			}
			off += e.Size
		}
	}
}

// TestUnknownArch: an architecture no family has is an error naming the
// known ones, wherever a shape is checked, and nothing that reads a shape
// before it is checked panics.
func TestUnknownArch(t *testing.T) {
	cfg := Presets["llama-tiny"]
	cfg.Arch = "mistral"
	err := cfg.Check()
	if err == nil {
		t.Fatal("Check accepts an unknown architecture")
	}
	for _, want := range append(Architectures(), `"mistral"`) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := NewModel(nil, cfg, nil); err == nil || !strings.Contains(err.Error(), "mistral") {
		t.Errorf("NewModel: %v", err)
	}
	c := Recipe(cfg)
	if err := c.Check(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "mistral") {
		t.Errorf("Config.Check: %v", err)
	}
	if cfg.NumParams() != 0 || cfg.MLP() != 0 || cfg.StepFLOPs(nil, 1, 1) != (FLOPs{}) {
		t.Errorf("an unknown architecture counts %d parameters, %d neurons, %v FLOPs", cfg.NumParams(), cfg.MLP(), cfg.StepFLOPs(nil, 1, 1))
	}
}
