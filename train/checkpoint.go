package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/kernels"
)

// writeSafetensors writes named float32 tensors in the safetensors layout
// (an 8-byte little-endian header length, a JSON header of dtype, shape and
// byte offsets, then the data), which Hugging Face and PyTorch read.
func writeSafetensors(path string, names []string, shapes [][]int, data [][]float32, meta map[string]string) error {
	type entry struct {
		Dtype   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	off := 0
	for i, n := range names {
		header[n] = entry{"F32", shapes[i], [2]int{off, off + 4*len(data[i])}}
		off += 4 * len(data[i])
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	buf := make([]byte, 8+len(h)+off)
	binary.LittleEndian.PutUint64(buf, uint64(len(h)))
	copy(buf[8:], h)
	p := 8 + len(h)
	for _, d := range data {
		for _, v := range d {
			binary.LittleEndian.PutUint32(buf[p:], math.Float32bits(v))
			p += 4
		}
	}
	return durable.WriteFile(filepath.Dir(path), filepath.Base(path), buf)
}

// readSafetensors reads every float32 tensor of a safetensors file.
func readSafetensors(path string) (map[string][]float32, map[string][]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parseSafetensors(path, b)
}

// parseSafetensors reads the F32 tensors of a safetensors file's bytes b
// (path names it in errors): each tensor's shape must account for exactly
// its bytes.
func parseSafetensors(path string, b []byte) (map[string][]float32, map[string][]int, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%s: too short for safetensors", path)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("%s: header of %d bytes in a file of %d", path, n, len(b))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		return nil, nil, fmt.Errorf("%s: header: %w", path, err)
	}
	body := b[8+n:]
	out, shapes := map[string][]float32{}, map[string][]int{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		if e.Dtype != "F32" {
			return nil, nil, fmt.Errorf("%s: tensor %s is %s; only F32 is read", path, name, e.Dtype)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > len(body) || (hi-lo)%4 != 0 {
			return nil, nil, fmt.Errorf("%s: tensor %s: offsets %v outside the data (%d bytes)", path, name, e.Offsets, len(body))
		}
		elems := 1
		for _, d := range e.Shape {
			if d < 0 || d > (hi-lo)/4 {
				elems = -1
				break
			}
			elems *= d
		}
		if elems != (hi-lo)/4 {
			return nil, nil, fmt.Errorf("%s: tensor %s: shape %v does not hold its %d bytes", path, name, e.Shape, hi-lo)
		}
		v := make([]float32, (hi-lo)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[lo+4*i:]))
		}
		out[name], shapes[name] = v, e.Shape
	}
	return out, shapes, nil
}

// checkpoint names.
const (
	ckptDir    = "checkpoints"
	latestName = "latest"
)

// tensorFiles are the files of a checkpoint's tensors: the parameters and
// AdamW's two moments, each by the table's names.
var tensorFiles = []string{"model.safetensors", "adam_m.safetensors", "adam_v.safetensors"}

func (g *core) tensorBufs() []kernels.Buf { return []kernels.Buf{g.Params, g.m, g.v} }

// saveTensors writes the parameters and moments into dir.
func (g *core) saveTensors(dir string) error {
	host := make([]float32, g.Cfg.NumParams())
	for i, buf := range g.tensorBufs() {
		g.ops.Download(host, buf)
		var names []string
		var shapes [][]int
		var data [][]float32
		for _, e := range g.table {
			names = append(names, e.Name)
			shapes = append(shapes, e.Shape)
			data = append(data, host[e.Offset:e.Offset+e.Size])
		}
		if err := writeSafetensors(filepath.Join(dir, tensorFiles[i]), names, shapes, data, map[string]string{"format": "estkit"}); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	return nil
}

// loadTensors reads the parameters and, with moments, AdamW's moments.
func (g *core) loadTensors(dir string, moments bool) error {
	n := 1
	if moments {
		n = 3
	}
	for i, buf := range g.tensorBufs()[:n] {
		file := tensorFiles[i]
		ts, shapes, err := readSafetensors(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		host := make([]float32, g.Cfg.NumParams())
		for _, e := range g.table {
			v, ok := ts[e.Name]
			if !ok {
				return fmt.Errorf("train: %s lacks tensor %s", file, e.Name)
			}
			if len(v) != e.Size || fmt.Sprint(shapes[e.Name]) != fmt.Sprint(e.Shape) {
				return fmt.Errorf("train: %s: tensor %s has shape %v, the model %v", file, e.Name, shapes[e.Name], e.Shape)
			}
			copy(host[e.Offset:], v)
		}
		g.ops.Upload(buf, host)
	}
	return nil
}

// latestCheckpoint returns the newest complete checkpoint directory of a run.
func latestCheckpoint(run string) (string, error) {
	b, err := os.ReadFile(filepath.Join(run, ckptDir, latestName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("train: %s has no checkpoint to resume from", run)
		}
		return "", err
	}
	d := filepath.Join(run, ckptDir, string(b))
	if _, err := os.Stat(filepath.Join(d, "state.json")); err != nil {
		return "", fmt.Errorf("train: checkpoint %s is incomplete: %w", d, err)
	}
	return d, nil
}

// pruneCheckpoints keeps the newest keep checkpoints.
func pruneCheckpoints(run string, keep int) {
	ents, _ := os.ReadDir(filepath.Join(run, ckptDir))
	var names []string
	for _, e := range ents {
		if e.IsDir() && len(e.Name()) > 5 && e.Name()[:5] == "step-" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		os.RemoveAll(filepath.Join(run, ckptDir, names[0]))
		names = names[1:]
	}
}
