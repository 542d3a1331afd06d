package train

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSafetensorsRoundTrip: written tensors read back with their shapes.
func TestSafetensorsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.safetensors")
	if err := writeSafetensors(path, []string{"a", "b"}, [][]int{{2, 3}, {4}}, [][]float32{{1, 2, 3, 4, 5, 6}, {-1, 0.5, 7, 8}}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	v, shapes, err := readSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v["a"], []float32{1, 2, 3, 4, 5, 6}) || !slices.Equal(v["b"], []float32{-1, 0.5, 7, 8}) ||
		!slices.Equal(shapes["a"], []int{2, 3}) || !slices.Equal(shapes["b"], []int{4}) {
		t.Fatalf("read back %v %v", v, shapes)
	}
}

// FuzzSafetensors: any bytes either parse into tensors whose shapes hold
// their values or fail with an error naming the file; never a panic.
func FuzzSafetensors(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.safetensors")
	if err := writeSafetensors(path, []string{"w", "b"}, [][]int{{2, 2}, {2}}, [][]float32{{1, 2, 3, 4}, {5, 6}}, nil); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, shapes, err := parseSafetensors("fuzz.safetensors", b)
		if err != nil {
			return
		}
		for name, x := range v {
			n := 1
			for _, d := range shapes[name] {
				n *= d
			}
			if n != len(x) {
				t.Fatalf("%s: shape %v with %d values", name, shapes[name], len(x))
			}
		}
	})
}

// TestReadTensorsLongHeader: a header longer than the first read is read
// in full; a tensor of another shape than the table's is refused.
func TestReadTensorsLongHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.safetensors")
	meta := map[string]string{"pad": strings.Repeat("x", 100000)}
	if err := writeSafetensors(path, []string{"a", "b"}, [][]int{{2, 3}, {4}}, [][]float32{{1, 2, 3, 4, 5, 6}, {-1, 0.5, 7, 8}}, meta); err != nil {
		t.Fatal(err)
	}
	table := []Param{{Name: "b", Shape: []int{4}, Size: 4}, {Name: "a", Shape: []int{2, 3}, Size: 6}}
	got := map[string][]float32{}
	if err := readTensors(path, table, func(e Param, v []float32) { got[e.Name] = slices.Clone(v) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["a"], []float32{1, 2, 3, 4, 5, 6}) || !slices.Equal(got["b"], []float32{-1, 0.5, 7, 8}) {
		t.Fatalf("read %v", got)
	}
	table[1].Shape = []int{3, 2}
	if err := readTensors(path, table, func(Param, []float32) {}); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("a tensor of another shape: %v", err)
	}
}
