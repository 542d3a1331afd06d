package train

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/kernels"
)

// writeSafetensors writes named float32 tensors in the safetensors layout
// (an 8-byte little-endian header length, a JSON header of dtype, shape and
// byte offsets, then the data), which Hugging Face and PyTorch read.
func writeSafetensors(path string, names []string, shapes [][]int, data [][]float32, meta map[string]string) error {
	src := make([]tensorSource, len(names))
	for i := range names {
		d := data[i]
		src[i] = tensorSource{names[i], shapes[i], len(d), func(dst []float32) { copy(dst, d) }}
	}
	_, err := streamSafetensors(path, src, meta)
	return err
}

// tensorSource is one tensor to write: n values that read fills in.
type tensorSource struct {
	name  string
	shape []int
	n     int
	read  func(dst []float32)
}

// streamSafetensors writes tensors one at a time through a buffer the size
// of the largest, so that a checkpoint of a model costs no copy of all of
// it in memory; the file is published atomically. It returns the file's
// size and sha256, as durable.File counted them while writing.
func streamSafetensors(path string, src []tensorSource, meta map[string]string) (FileRecord, error) {
	type entry struct {
		Dtype   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	off, largest := 0, 0
	for _, t := range src {
		header[t.name] = entry{"F32", t.shape, [2]int{off, off + 4*t.n}}
		off += 4 * t.n
		largest = max(largest, t.n)
	}
	h, err := json.Marshal(header)
	if err != nil {
		return FileRecord{}, err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := durable.Create(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		return FileRecord{}, err
	}
	defer f.Abort()
	w := bufio.NewWriterSize(f, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	w.Write(n[:])
	w.Write(h)
	vals := make([]float32, largest)
	var b [4]byte
	for _, t := range src {
		v := vals[:t.n]
		t.read(v)
		for _, x := range v {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
			w.Write(b[:])
		}
	}
	if err := w.Flush(); err != nil {
		return FileRecord{}, err
	}
	size, sum, err := f.Commit()
	return FileRecord{Name: filepath.Base(path), Size: size, SHA256: sum}, err
}

// readSafetensors reads every float32 tensor of a safetensors file.
func readSafetensors(path string) (map[string][]float32, map[string][]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parseSafetensors(path, b)
}

// stEntry is one tensor of a safetensors header, its offsets checked
// against the data and its shape against its bytes.
type stEntry struct {
	Dtype   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// parseHeader reads a safetensors header: head is the file's first bytes
// (at least 8, and the header when they hold it), size the file's length.
// It returns the F32 tensors and where the data begins; needMore > 0 asks
// for that many bytes of head first.
func parseHeader(path string, head []byte, size int64) (entries map[string]stEntry, dataOff int64, needMore int, err error) {
	if size < 8 || len(head) < 8 {
		return nil, 0, 0, fmt.Errorf("%s: too short for safetensors", path)
	}
	n := binary.LittleEndian.Uint64(head)
	if n > uint64(size-8) {
		return nil, 0, 0, fmt.Errorf("%s: header of %d bytes in a file of %d", path, n, size)
	}
	if uint64(len(head)) < 8+n {
		return nil, 0, int(8 + n), nil
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(head[8:8+n], &header); err != nil {
		return nil, 0, 0, fmt.Errorf("%s: header: %w", path, err)
	}
	body := size - 8 - int64(n)
	entries = map[string]stEntry{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, 0, 0, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		if e.Dtype != "F32" {
			return nil, 0, 0, fmt.Errorf("%s: tensor %s is %s; only F32 is read", path, name, e.Dtype)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || int64(hi) > body || (hi-lo)%4 != 0 {
			return nil, 0, 0, fmt.Errorf("%s: tensor %s: offsets %v outside the data (%d bytes)", path, name, e.Offsets, body)
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
			return nil, 0, 0, fmt.Errorf("%s: tensor %s: shape %v does not hold its %d bytes", path, name, e.Shape, hi-lo)
		}
		entries[name] = e
	}
	return entries, 8 + int64(n), 0, nil
}

// decodeF32 turns little-endian float32 bytes into dst.
func decodeF32(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// parseSafetensors reads the F32 tensors of a safetensors file's bytes b
// (path names it in errors): each tensor's shape must account for exactly
// its bytes.
func parseSafetensors(path string, b []byte) (map[string][]float32, map[string][]int, error) {
	entries, off, _, err := parseHeader(path, b, int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	out, shapes := map[string][]float32{}, map[string][]int{}
	for name, e := range entries {
		v := make([]float32, (e.Offsets[1]-e.Offsets[0])/4)
		decodeF32(v, b[off+int64(e.Offsets[0]):])
		out[name], shapes[name] = v, e.Shape
	}
	return out, shapes, nil
}

// readTensors reads a safetensors file a tensor at a time: for each table
// entry, its tensor (which must have the entry's shape) is decoded into a
// buffer the size of the largest and handed to put, so that loading a
// model costs no copy of all of it in memory.
func readTensors(path string, table []Param, put func(e Param, v []float32)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	head := make([]byte, min(st.Size(), 1<<16))
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	entries, off, more, err := parseHeader(path, head, st.Size())
	if more > 0 {
		head = make([]byte, more)
		if _, err := f.ReadAt(head, 0); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		entries, off, _, err = parseHeader(path, head, st.Size())
	}
	if err != nil {
		return err
	}
	largest := 0
	for _, e := range table {
		largest = max(largest, e.Size)
	}
	raw, vals := make([]byte, 4*largest), make([]float32, largest)
	for _, e := range table {
		t, ok := entries[e.Name]
		if !ok {
			return fmt.Errorf("%s lacks tensor %s", path, e.Name)
		}
		if !slices.Equal(t.Shape, e.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, the model %v", path, e.Name, t.Shape, e.Shape)
		}
		b := raw[:4*e.Size]
		if _, err := f.ReadAt(b, off+int64(t.Offsets[0])); err != nil {
			return fmt.Errorf("%s: tensor %s: %w", path, e.Name, err)
		}
		decodeF32(vals[:e.Size], b)
		put(e, vals[:e.Size])
	}
	return nil
}

// checkpoint names.
const (
	ckptDir            = "checkpoints"
	latestName         = "latest"
	checkpointManifest = "manifest.json"
)

// ErrCorrupt: a file of a run differs from what its writer recorded.
var ErrCorrupt = errors.New("corrupt")

// tensorFiles are the files of a checkpoint's tensors: the parameters and
// AdamW's two moments, each by the table's names.
var tensorFiles = []string{"model.safetensors", "adam_m.safetensors", "adam_v.safetensors"}

func (g *core) tensorBufs() []kernels.Buf { return []kernels.Buf{g.params, g.m, g.v} }

// SaveTensors writes the parameters and moments into dir, a tensor at a
// time, and the step counts, and returns the files' sizes and hashes
// (Model).
func (g *core) SaveTensors(dir string) ([]FileRecord, error) {
	var recs []FileRecord
	for i, buf := range g.tensorBufs() {
		src := make([]tensorSource, len(g.table))
		for k, e := range g.table {
			src[k] = tensorSource{e.Name, e.Shape, e.Size, func(dst []float32) { g.ops.Download(dst, g.ops.Slice(buf, e.Offset, e.Size)) }}
		}
		r, err := streamSafetensors(filepath.Join(dir, tensorFiles[i]), src, map[string]string{"format": "estkit"})
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		recs = append(recs, r)
	}
	r, err := g.saveSteps(dir)
	if err != nil {
		return nil, err
	}
	return append(recs, r), nil
}

// LoadTensors reads the parameters and, with moments, AdamW's moments and
// step counts (Model).
func (g *core) LoadTensors(dir string, moments bool) error {
	n := 1
	if moments {
		n = 3
	}
	for i, buf := range g.tensorBufs()[:n] {
		err := readTensors(filepath.Join(dir, tensorFiles[i]), g.table, func(e Param, v []float32) {
			g.ops.Upload(g.ops.Slice(buf, e.Offset, e.Size), v)
		})
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	if moments {
		if err := g.loadSteps(dir); err != nil {
			return err
		}
	}
	g.paramsChanged()
	return nil
}

// latestCheckpoint returns the checkpoint directory checkpoints/latest
// names.
func latestCheckpoint(run string) (string, error) {
	path := filepath.Join(run, ckptDir, latestName)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("train: %s has no checkpoint to resume from", run)
		}
		return "", fmt.Errorf("train: %w", err)
	}
	if _, ok := parseStepName(string(b)); !ok {
		return "", fmt.Errorf("train: %s: %w: %q is not a checkpoint's name", path, ErrCorrupt, b)
	}
	return filepath.Join(run, ckptDir, string(b)), nil
}

// pruneCheckpoints keeps the newest keep checkpoints of the run named id
// in its manifests: of those before current (the checkpoint just written,
// which latest names, and which always stays), the newest keep-1. A
// directory whose manifest is unreadable or names another run is not the
// run's to delete.
func pruneCheckpoints(run string, current, keep int, id string) error {
	base := filepath.Join(run, ckptDir)
	ents, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	var older []int
	for _, e := range ents {
		step, ok := parseStepName(e.Name())
		if !ok || !e.IsDir() || step >= current {
			continue
		}
		if m, err := readManifest(filepath.Join(base, e.Name())); err == nil && m.Run == id && m.Step == step {
			older = append(older, step)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(older)))
	for _, step := range older[min(len(older), max(keep-1, 0)):] {
		if err := os.RemoveAll(filepath.Join(base, stepName(step))); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	return nil
}
