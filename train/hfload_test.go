package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// bigFloat32 is sign·mant·2^exp rounded once to float32 by math/big
// (exact for every value a 16-bit float holds).
func bigFloat32(neg bool, mant int64, exp int) float32 {
	x := new(big.Float).SetMantExp(big.NewFloat(float64(mant)), exp)
	if neg {
		x.Neg(x)
	}
	f, acc := x.Float32()
	if acc != big.Exact {
		panic("not exact")
	}
	return f
}

// TestF16ToF32: every binary16 bit pattern widens to the float32 math/big
// computes from its fields; infinities stay infinite, NaNs NaN with their
// sign and payload, negative zero negative.
func TestF16ToF32(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		neg, exp, mant := h>>15 == 1, h>>10&0x1f, int64(h&0x3ff)
		got := f16ToF32(uint16(h))
		bits := math.Float32bits(got)
		switch {
		case exp == 0x1f && mant == 0:
			if !math.IsInf(float64(got), map[bool]int{false: 1, true: -1}[neg]) {
				t.Fatalf("%#04x: %v, want an infinity", h, got)
			}
		case exp == 0x1f:
			if got == got || bits>>31 == 1 != neg || bits&0x7fffff != uint32(mant)<<13 {
				t.Fatalf("%#04x: %#08x, want a NaN of the same sign and payload", h, bits)
			}
		default:
			var want float32
			if exp == 0 {
				want = bigFloat32(neg, mant, -24)
			} else {
				want = bigFloat32(neg, mant+1024, exp-15-10)
			}
			if bits != math.Float32bits(want) {
				t.Fatalf("%#04x: %v (%#08x), want %v (%#08x)", h, got, bits, want, math.Float32bits(want))
			}
		}
	}
}

// TestBF16: every bfloat16 bit pattern decodes to the float32 math/big
// computes from its fields (8 exponent bits, 7 of mantissa), and encodes
// back to itself (a NaN to a NaN of its sign).
func TestBF16(t *testing.T) {
	var b [2]byte
	dst := make([]float32, 1)
	for h := 0; h < 1<<16; h++ {
		binary.LittleEndian.PutUint16(b[:], uint16(h))
		decodeBF16(dst, b[:])
		got := dst[0]
		neg, exp, mant := h>>15 == 1, h>>7&0xff, int64(h&0x7f)
		if exp == 0xff {
			if mant == 0 && !math.IsInf(float64(got), 0) || mant != 0 && got == got {
				t.Fatalf("%#04x: %v", h, got)
			}
			if back := f32ToBF16(got); mant != 0 && (back>>7&0xff != 0xff || back&0x7f == 0 || back>>15 != uint16(h>>15)) {
				t.Fatalf("NaN %#04x encodes as %#04x", h, back)
			}
			continue
		}
		var want float32
		if exp == 0 {
			want = bigFloat32(neg, mant, -126-7)
		} else {
			want = bigFloat32(neg, mant+128, exp-127-7)
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("%#04x: %v, want %v", h, got, want)
		}
		if back := f32ToBF16(got); back != uint16(h) {
			t.Fatalf("%#04x decodes to %v, which encodes as %#04x", h, got, back)
		}
	}
}

// TestF32ToBF16Rounding: float32 values round to the nearest bfloat16,
// ties to even, past the largest to infinity, as math/big rounds them
// (normal range: 8 significant bits; subnormal: multiples of 2⁻¹³³).
func TestF32ToBF16Rounding(t *testing.T) {
	var x uint32 = 0x9e3779b9
	for i := 0; i < 1<<18; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		bits := x
		if i%7 == 0 {
			bits = bits&0xffff0000 | 0x8000 // a tie
		}
		f := math.Float32frombits(bits)
		if f != f {
			continue
		}
		got := f32ToBF16(f)
		var want float32
		if bits>>23&0xff == 0 { // subnormal: integer rounding of the mantissa
			m := bits & 0x7fffff
			q, r := m>>16, m&0xffff
			if r > 0x8000 || r == 0x8000 && q&1 == 1 {
				q++
			}
			want = math.Float32frombits(bits&0x80000000 | q<<16)
		} else {
			r := new(big.Float).SetMode(big.ToNearestEven).SetPrec(8)
			r.Set(big.NewFloat(float64(f)))
			w, _ := r.Float64()
			if math.Abs(w) > 3.3895313892515355e38 { // past bfloat16's largest
				w = math.Inf(int(w / math.Abs(w)))
			}
			want = float32(w)
		}
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], got)
		dst := make([]float32, 1)
		decodeBF16(dst, b[:])
		if math.Float32bits(dst[0]) != math.Float32bits(want) {
			t.Fatalf("%#08x (%v): bf16 %#04x = %v, want %v", bits, f, got, dst[0], want)
		}
	}
}

// tinyLlama is the shape of testdata/tinyllama-bf16 (tinyllama_bf16.py).
var tinyLlama = ModelConfig{Arch: "llama", Vocab: 61, Padded: 64, Layers: 2, Heads: 4, KVHeads: 2, Channels: 16, FF: 24, MaxT: 8, RopeTheta: 10000, NormEps: 1e-5}

// loadParams loads path into a fresh model of cfg and returns its
// parameters.
func loadParams(t *testing.T, cfg ModelConfig, path string) ([]float32, error) {
	t.Helper()
	m, err := NewModel(cpu.New(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadHF(m, path); err != nil {
		return nil, err
	}
	p := make([]float32, cfg.NumParams())
	m.Ops().Download(p, m.Params())
	return p, nil
}

// TestLoadHFTinyLlamaBF16: a TinyLlama-shaped checkpoint as Hugging Face
// lays it out (config.json, BF16 in two shards and their index) loads,
// from the directory and from the index, to exactly the values of the same
// tensors widened to F32 by PyTorch (subnormal and negative zero included).
func TestLoadHFTinyLlamaBF16(t *testing.T) {
	want, err := loadParams(t, tinyLlama, filepath.Join("testdata", "tinyllama-f32.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join("testdata", "tinyllama-bf16"), filepath.Join("testdata", "tinyllama-bf16", hfIndex)} {
		got, err := loadParams(t, tinyLlama, path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		nonzero := 0
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: parameter %d: %v, PyTorch %v", path, i, got[i], want[i])
			}
			if want[i] != 0 {
				nonzero++
			}
		}
		if nonzero < len(want)/2 {
			t.Fatalf("%d of %d parameters nonzero", nonzero, len(want))
		}
	}
}

// copyDir copies the fixture checkpoint into a directory a test may damage.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func editJSON(t *testing.T, path string, edit func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadHFRefuses: a damaged checkpoint, an index that names missing
// files or tensors, a tensor in two shards, and a config.json of another
// shape are refused with an error naming the file (and the field), never
// a panic.
func TestLoadHFRefuses(t *testing.T) {
	const shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string // in the error
		is     error
	}{
		{"truncated shard", func(t *testing.T, dir string) {
			p := filepath.Join(dir, shard2)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, []string{shard2, "truncated"}, ErrSafetensors},
		{"cut in the header", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, shard1), 100) }, []string{shard1}, ErrSafetensors},
		{"huge header length", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, shard1))
			binary.LittleEndian.PutUint64(b, 1<<62)
			os.WriteFile(filepath.Join(dir, shard1), b, 0o644)
		}, []string{shard1, "header"}, ErrSafetensors},
		{"bad header JSON", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, shard1))
			b[8] = 'x'
			os.WriteFile(filepath.Join(dir, shard1), b, 0o644)
		}, []string{shard1, "header"}, ErrSafetensors},
		{"missing shard", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, shard2)) }, []string{hfIndex, shard2, "missing"}, nil},
		{"index names a tensor its shard lacks", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfIndex), func(m map[string]any) {
				m["weight_map"].(map[string]any)["model.norm.weight"] = shard1
			})
		}, []string{hfIndex, "model.norm.weight", shard1}, ErrSafetensors},
		{"index names a file outside", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfIndex), func(m map[string]any) {
				m["weight_map"].(map[string]any)["model.norm.weight"] = "../x.safetensors"
			})
		}, []string{hfIndex, "../x.safetensors"}, ErrSafetensors},
		{"empty index", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, hfIndex), []byte(`{"metadata": {}}`), 0o644)
		}, []string{hfIndex, "weight_map"}, ErrSafetensors},
		{"tensor in two shards", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, shard1))
			os.WriteFile(filepath.Join(dir, "model-00003-of-00003.safetensors"), b, 0o644)
			editJSON(t, filepath.Join(dir, hfIndex), func(m map[string]any) {
				m["weight_map"].(map[string]any)["extra"] = "model-00003-of-00003.safetensors"
			})
		}, []string{shard1, "model-00003-of-00003.safetensors", "both"}, ErrSafetensors},
		{"config of other key/value heads", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfConfig), func(m map[string]any) { m["num_key_value_heads"] = 4 })
		}, []string{hfConfig, "num_key_value_heads is 4", "kv_heads 2"}, ErrConfig},
		{"config of another family", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfConfig), func(m map[string]any) { m["model_type"] = "gpt2" })
		}, []string{hfConfig, "model_type"}, ErrConfig},
		{"config with rotary scaling", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfConfig), func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "linear", "factor": 2} })
		}, []string{hfConfig, "rope_scaling"}, ErrConfig},
		{"config of a longer MLP", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, hfConfig), func(m map[string]any) { m["intermediate_size"] = 32 })
		}, []string{hfConfig, "intermediate_size is 32", "ff 24"}, ErrConfig},
		{"an integer tensor", func(t *testing.T, dir string) {
			p := filepath.Join(dir, shard1)
			b, _ := os.ReadFile(p)
			n := binary.LittleEndian.Uint64(b)
			h := strings.Replace(string(b[8:8+n]), `"dtype":"BF16"`, `"dtype":"I16" `, 1)
			os.WriteFile(p, append(append(b[:8:8], h...), b[8+n:]...), 0o644)
		}, []string{shard1, "I16", "F32, BF16 and F16"}, nil},
		{"neither weights nor index", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, hfIndex)) }, []string{"neither"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", "tinyllama-bf16"))
			c.damage(t, dir)
			_, err := loadParams(t, tinyLlama, dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %q is not %v", err, c.is)
			}
		})
	}
}

// TestLoadHFF16: F16 tensors (written here by hand, as the spec lays them
// out) load as their exact float32 values.
func TestLoadHFF16(t *testing.T) {
	cfg := ModelConfig{Vocab: 61, Padded: 64, Layers: 1, Heads: 2, Channels: 8, MaxT: 8}
	m, err := NewModel(cpu.New(), cfg, cfg.InitParams(5))
	if err != nil {
		t.Fatal(err)
	}
	host := make([]float32, cfg.NumParams())
	m.Ops().Download(host, m.Params())
	names, shapes, data := gpt2Family.hf.export(cfg, m.Table(), host)
	header := map[string]any{}
	var body []byte
	wantVals := map[string][]float32{}
	for i, name := range names {
		start := len(body)
		var w []float32
		for k := range data[i] {
			h := uint16(k*2654435761>>7) & 0xbfff // any sign, mantissa, exponent below 31: finite
			if k%5 == 0 {
				h = uint16(k & 0x83ff) // subnormals and zeros
			}
			body = binary.LittleEndian.AppendUint16(body, h)
			w = append(w, f16ToF32(h))
		}
		header[name] = map[string]any{"dtype": "F16", "shape": shapes[i], "data_offsets": []int{start, len(body)}}
		wantVals[name] = w
	}
	hb, _ := json.Marshal(header)
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	file = append(append(file, hb...), body...)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := loadParams(t, cfg, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Table() {
		if e.Name != "ln_f.weight" && e.Name != "h.0.ln_1.bias" {
			continue
		}
		w := wantVals["transformer."+e.Name]
		for i, x := range w {
			if math.Float32bits(got[e.Offset+i]) != math.Float32bits(x) {
				t.Fatalf("%s[%d]: %v, want %v", e.Name, i, got[e.Offset+i], x)
			}
		}
	}
}

// FuzzHFIndex: any model.safetensors.index.json beside the fixture's shards
// opens or fails with an error naming the index or a shard; never a panic.
func FuzzHFIndex(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "tinyllama-bf16", hfIndex))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "x.safetensors"}}`))
	f.Add([]byte(`{"weight_map": {"a": ""}}`))
	dir := copyDir(f, filepath.Join("testdata", "tinyllama-bf16"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, hfIndex)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		h, _, err := openHF(path)
		if err != nil {
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q names no file", err)
			}
			return
		}
		h.Close()
	})
}
