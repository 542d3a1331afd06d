package train

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// heldConfigs are a GPT-2 and a Llama with every kind of tensor.
func heldConfigs() []ModelConfig {
	gpt2, _, _, _ := fourBlocks()
	gpt2.Arch = "gpt2"
	return []ModelConfig{gpt2, tinyLlama}
}

// TestHeldTransposed: the tensors held transposed are exactly the output
// projections (whose sampled units are PyTorch's columns), and
// HeldToTorch and TorchToHeld move each value of such a tensor between
// element (r, c) of PyTorch's [out × in] and element (c, r) of the held
// [in × out], leaving every other tensor as it is.
func TestHeldTransposed(t *testing.T) {
	for _, cfg := range heldConfigs() {
		torch := make([]float32, cfg.NumParams())
		for i := range torch {
			torch[i] = float32(i)
		}
		held := slices.Clone(torch)
		cfg.TorchToHeld(held)
		n := 0
		for _, e := range cfg.Table() {
			proj := strings.HasSuffix(e.Name, "c_proj.weight") || strings.HasSuffix(e.Name, "o_proj.weight") || strings.HasSuffix(e.Name, "down_proj.weight")
			if e.T != proj || e.T != (e.Unit == unitHeadCols || e.Unit == unitNeuronCols) {
				t.Fatalf("%s %s: held transposed %v", cfg.Arch, e.Name, e.T)
			}
			if !e.T {
				if !slices.Equal(held[e.Offset:e.Offset+e.Size], torch[e.Offset:e.Offset+e.Size]) {
					t.Fatalf("%s %s moved", cfg.Arch, e.Name)
				}
				continue
			}
			n++
			R, C := e.Shape[0], e.Shape[1]
			if h := e.Held(); h[0] != C || h[1] != R {
				t.Fatalf("%s %s: held %v, shape %v", cfg.Arch, e.Name, h, e.Shape)
			}
			for r := 0; r < R; r++ {
				for c := 0; c < C; c++ {
					if held[e.Offset+c*R+r] != torch[e.Offset+r*C+c] {
						t.Fatalf("%s %s: held (%d, %d) is %v, PyTorch's (%d, %d) %v", cfg.Arch, e.Name, c, r, held[e.Offset+c*R+r], r, c, torch[e.Offset+r*C+c])
					}
				}
			}
		}
		if n != 2*cfg.Layers {
			t.Fatalf("%s: %d tensors held transposed, want %d", cfg.Arch, n, 2*cfg.Layers)
		}
		cfg.HeldToTorch(held)
		if !slices.Equal(held, torch) {
			t.Fatalf("%s: HeldToTorch does not undo TorchToHeld", cfg.Arch)
		}
	}
}

// TestCheckpointKeepsPyTorchLayout: a checkpoint holds the parameters and
// both moments in PyTorch's layout, whatever the model holds transposed;
// and a checkpoint in that layout (as every estkit version wrote them)
// loads into the same parameters and moments.
func TestCheckpointKeepsPyTorchLayout(t *testing.T) {
	for _, cfg := range heldConfigs() {
		ops := cpu.New()
		m, err := NewModel(ops, cfg, cfg.InitParams(3))
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int32, 2*cfg.MaxT)
		for i := range ids {
			ids[i] = int32(i * 5 % cfg.Vocab)
		}
		m.ZeroGrads(nil)
		if _, err := m.Forward(ids, ids, 2, cfg.MaxT, nil); err != nil {
			t.Fatal(err)
		}
		m.Backward(1)
		m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}})
		dir := t.TempDir()
		if _, err := m.SaveTensors(dir); err != nil {
			t.Fatal(err)
		}
		g := m.(*model)
		for i, buf := range g.tensorBufs() {
			held := make([]float32, cfg.NumParams())
			ops.Download(held, buf)
			want := slices.Clone(held)
			cfg.HeldToTorch(want)
			got := make([]float32, cfg.NumParams())
			err := readTensors(filepath.Join(dir, tensorFiles[i]), cfg.Table(), func(e Param, v []float32) { copy(got[e.Offset:], v) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s %s: not the model's values in PyTorch's layout", cfg.Arch, tensorFiles[i])
			}
			for _, e := range cfg.Table() {
				if e.T && slices.Equal(got[e.Offset:e.Offset+e.Size], held[e.Offset:e.Offset+e.Size]) {
					t.Fatalf("%s %s: %s written as the model holds it", cfg.Arch, tensorFiles[i], e.Name)
				}
			}
		}
		n, _ := NewModel(ops, cfg, nil)
		if err := n.LoadTensors(dir, true); err != nil {
			t.Fatal(err)
		}
		for i, buf := range n.(*model).tensorBufs() {
			got, want := make([]float32, cfg.NumParams()), make([]float32, cfg.NumParams())
			ops.Download(got, buf)
			ops.Download(want, g.tensorBufs()[i])
			if !slices.Equal(got, want) {
				t.Fatalf("%s %s: loaded values differ from the saved model's", cfg.Arch, tensorFiles[i])
			}
		}
	}
}
