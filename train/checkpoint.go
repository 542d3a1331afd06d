package train

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

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
	_, err := streamSafetensors(path, src, "F32", meta)
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
// it in memory; the file is published atomically. dtype is F32 or BF16
// (rounded to nearest, ties to even). It returns the file's size and
// sha256, as durable.File counted them while writing.
func streamSafetensors(path string, src []tensorSource, dtype string, meta map[string]string) (FileRecord, error) {
	type entry struct {
		Dtype   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	size := stDtypes[dtype].size
	off, largest := 0, 0
	for _, t := range src {
		header[t.name] = entry{dtype, t.shape, [2]int{off, off + size*t.n}}
		off += size * t.n
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
	var hl [8]byte
	binary.LittleEndian.PutUint64(hl[:], uint64(len(h)))
	w.Write(hl[:])
	w.Write(h)
	vals := make([]float32, largest)
	var b [4]byte
	for _, t := range src {
		v := vals[:t.n]
		t.read(v)
		for _, x := range v {
			if dtype == "BF16" {
				binary.LittleEndian.PutUint16(b[:], f32ToBF16(x))
			} else {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
			}
			w.Write(b[:size])
		}
	}
	if err := w.Flush(); err != nil {
		return FileRecord{}, err
	}
	n, sum, err := f.Commit()
	return FileRecord{Name: filepath.Base(path), Size: n, SHA256: sum}, err
}

// stDtype is a safetensors element type estkit reads: its size in bytes
// and its exact conversion to float32 (every F16 and BF16 value, subnormals,
// infinities and NaNs included, is a float32).
type stDtype struct {
	size   int
	decode func(dst []float32, b []byte)
}

// stDtypes are the element types read, by the header's name for them.
var stDtypes = map[string]stDtype{"F32": {4, decodeF32}, "BF16": {2, decodeBF16}, "F16": {2, decodeF16}}

// maxHeader bounds a safetensors header, as the format's reference
// implementation does (100 MB), so that a damaged length field costs an
// error, not an allocation of the whole file.
const maxHeader = 100 << 20

// ErrSafetensors: a safetensors file (or a sharded checkpoint's index) that
// is damaged, truncated or inconsistent.
var ErrSafetensors = errors.New("bad safetensors")

// readSafetensors reads every tensor of a safetensors file as float32.
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

// elems is the number of values the entry holds.
func (e stEntry) elems() int { return (e.Offsets[1] - e.Offsets[0]) / stDtypes[e.Dtype].size }

// parseHeader reads a safetensors header: head is the file's first bytes
// (at least 8, and the header when they hold it), size the file's length.
// It returns the tensors and where the data begins; needMore > 0 asks
// for that many bytes of head first.
func parseHeader(path string, head []byte, size int64) (entries map[string]stEntry, dataOff int64, needMore int, err error) {
	if size < 8 || len(head) < 8 {
		return nil, 0, 0, fmt.Errorf("%s: %w: %d bytes, too short for safetensors", path, ErrSafetensors, size)
	}
	n := binary.LittleEndian.Uint64(head)
	if n > uint64(size-8) || n > maxHeader {
		return nil, 0, 0, fmt.Errorf("%s: %w: header of %d bytes in a file of %d (truncated or not safetensors)", path, ErrSafetensors, n, size)
	}
	if uint64(len(head)) < 8+n {
		return nil, 0, int(8 + n), nil
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(head[8:8+n], &header); err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w: header: %v", path, ErrSafetensors, err)
	}
	body := size - 8 - int64(n)
	entries = map[string]stEntry{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, 0, 0, fmt.Errorf("%s: %w: tensor %s: %v", path, ErrSafetensors, name, err)
		}
		dt, ok := stDtypes[e.Dtype]
		if !ok {
			return nil, 0, 0, fmt.Errorf("%s: tensor %s is %s; estkit reads F32, BF16 and F16", path, name, e.Dtype)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || int64(hi) > body || (hi-lo)%dt.size != 0 {
			return nil, 0, 0, fmt.Errorf("%s: %w: tensor %s: offsets %v outside the data (%d bytes; truncated?)", path, ErrSafetensors, name, e.Offsets, body)
		}
		want, elems := (hi-lo)/dt.size, 1
		for _, d := range e.Shape {
			if d < 0 || d > want || (d > 0 && elems > want/d) { // no product past the bytes, so none overflows
				elems = -1
				break
			}
			elems *= d
		}
		if elems != want {
			return nil, 0, 0, fmt.Errorf("%s: %w: tensor %s: shape %v does not hold its %d bytes of %s", path, ErrSafetensors, name, e.Shape, hi-lo, e.Dtype)
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

// decodeBF16 turns little-endian bfloat16 bytes into dst: a bfloat16 is
// the upper half of the float32 of the same value.
func decodeBF16(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
	}
}

// decodeF16 turns little-endian IEEE half-precision bytes into dst.
func decodeF16(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = f16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
	}
}

// f16ToF32 widens an IEEE 754 binary16 exactly: the sign kept, a normal
// number's exponent rebiased (15 to 127), a subnormal's value m·2⁻²⁴
// (normal in float32), infinities kept and a NaN's payload shifted into
// float32's mantissa, its quiet bit where float32 has it.
func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp, mant := uint32(h>>10)&0x1f, uint32(h)&0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		v := float32(mant) * (1.0 / (1 << 24)) // exact: mant < 2¹⁰, the scale a power of two
		return math.Float32frombits(sign | math.Float32bits(v))
	}
	return math.Float32frombits(sign | (exp-15+127)<<23 | mant<<13)
}

// f32ToBF16 rounds a float32 to the nearest bfloat16, ties to even (as
// PyTorch's conversion does); a NaN stays a NaN, its sign kept and quiet.
func f32ToBF16(x float32) uint16 {
	b := math.Float32bits(x)
	if x != x {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// parseSafetensors reads the tensors of a safetensors file's bytes b
// (path names it in errors) as float32: each tensor's shape must account
// for exactly its bytes.
func parseSafetensors(path string, b []byte) (map[string][]float32, map[string][]int, error) {
	entries, off, _, err := parseHeader(path, b, int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	out, shapes := map[string][]float32{}, map[string][]int{}
	for name, e := range entries {
		v := make([]float32, e.elems())
		stDtypes[e.Dtype].decode(v, b[off+int64(e.Offsets[0]):])
		out[name], shapes[name] = v, e.Shape
	}
	return out, shapes, nil
}

// stFile is an open safetensors file and its header.
type stFile struct {
	path    string
	f       *os.File
	entries map[string]stEntry
	off     int64 // where the data begins
}

// openSafetensors opens a safetensors file and reads its header (at most
// maxHeader bytes, and never more than the file holds).
func openSafetensors(path string) (*stFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	head := make([]byte, min(st.Size(), 1<<16))
	if _, err := f.ReadAt(head, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	entries, off, more, err := parseHeader(path, head, st.Size())
	if more > 0 {
		head = make([]byte, more)
		if _, err := f.ReadAt(head, 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		entries, off, _, err = parseHeader(path, head, st.Size())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &stFile{path: path, f: f, entries: entries, off: off}, nil
}

// read decodes tensor e of the file into dst (e.elems() values), through
// raw (scratch of at least its bytes; grown when short).
func (s *stFile) read(name string, e stEntry, dst []float32, raw *[]byte) error {
	n := e.Offsets[1] - e.Offsets[0]
	if cap(*raw) < n {
		*raw = make([]byte, n)
	}
	b := (*raw)[:n]
	if _, err := s.f.ReadAt(b, s.off+int64(e.Offsets[0])); err != nil {
		return fmt.Errorf("%s: tensor %s: %w", s.path, name, err)
	}
	stDtypes[e.Dtype].decode(dst, b)
	return nil
}

// readTensors reads a safetensors file a tensor at a time: for each table
// entry, its tensor (which must have the entry's shape) is decoded into a
// buffer the size of the largest and handed to put, so that loading a
// model costs no copy of all of it in memory.
func readTensors(path string, table []Param, put func(e Param, v []float32)) error {
	s, err := openSafetensors(path)
	if err != nil {
		return err
	}
	defer s.f.Close()
	largest := 0
	for _, e := range table {
		largest = max(largest, e.Size)
	}
	var raw []byte
	vals := make([]float32, largest)
	for _, e := range table {
		t, ok := s.entries[e.Name]
		if !ok {
			return fmt.Errorf("%s lacks tensor %s", path, e.Name)
		}
		if !slices.Equal(t.Shape, e.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, the model %v", path, e.Name, t.Shape, e.Shape)
		}
		if err := s.read(e.Name, t, vals[:e.Size], &raw); err != nil {
			return err
		}
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
// time in PyTorch's layout (Param.Shape), and the step counts, and returns
// the files' sizes and hashes (Model).
func (g *core) SaveTensors(dir string) ([]FileRecord, error) {
	var recs []FileRecord
	var tmp []float32 // streamSafetensors reads one tensor at a time
	for i, buf := range g.tensorBufs() {
		src := make([]tensorSource, len(g.table))
		for k, e := range g.table {
			src[k] = tensorSource{e.Name, e.Shape, e.Size, func(dst []float32) {
				g.ops.Download(dst, g.ops.Slice(buf, e.Offset, e.Size))
				tmp = relayoutTensor(e, dst, tmp, true)
			}}
		}
		r, err := streamSafetensors(filepath.Join(dir, tensorFiles[i]), src, "F32", map[string]string{"format": "estkit"})
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
	var tmp []float32
	for i, buf := range g.tensorBufs()[:n] {
		err := readTensors(filepath.Join(dir, tensorFiles[i]), g.table, func(e Param, v []float32) {
			tmp = relayoutTensor(e, v, tmp, false)
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
	// estkit writes latest as a file; a link to one is read through. Any
	// other thing there names no checkpoint, and a pipe would block the
	// read: it is told as a corrupt checkpoint is, with the intact one.
	if lst, err := os.Lstat(path); err == nil && !lst.Mode().IsRegular() {
		st, serr := os.Stat(path)
		if serr != nil || !st.Mode().IsRegular() {
			what := durable.Kind(lst.Mode())
			if lst.Mode()&fs.ModeSymlink != 0 {
				to, _ := os.Readlink(path)
				what = fmt.Sprintf("a symbolic link to %s, which is no file", to)
			}
			return "", recoveryAdvice(run, "", true, fmt.Errorf("train: %s: %w: it is %s, where a file names the latest checkpoint", path, ErrCorrupt, what))
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if run == "" {
				return "", fmt.Errorf("train: no run directory given (an empty --run)")
			}
			if _, serr := os.Stat(run); errors.Is(serr, os.ErrNotExist) {
				return "", fmt.Errorf("train: %s does not exist: give a run directory (estkit train --out)", run)
			}
			if newest := newestCheckpoint(run); newest != "" {
				return "", fmt.Errorf("train: %s is missing, but the run holds complete checkpoints, the newest %s: restore latest to name it (printf %s > %s)", path, newest, newest, path)
			}
			if _, serr := os.Stat(filepath.Join(run, "config.json")); serr == nil {
				return "", fmt.Errorf("train: %s: no checkpoint was written yet (a run writes one every --checkpoint-every steps, at its end, and when interrupted after a step): its training stopped before the first, so there is nothing to resume or read; train with --overwrite in place of --resume to start it again", run)
			}
			return "", fmt.Errorf("train: %s has no checkpoint (a run writes one at its end and every --checkpoint-every steps): is it a run directory, or was its training stopped before the first?", run)
		}
		// a latest that cannot be read names no checkpoint: the failure
		// is told as a corrupt checkpoint's is, with the intact one
		return "", withRecovery(run, "", fmt.Errorf("train: %s: %w: it cannot be read: %w", path, ErrCorrupt, err))
	}
	name := strings.TrimSpace(string(b)) // an editor's newline is no corruption
	if name == "" {
		return "", withRecovery(run, "", fmt.Errorf("train: %s: %w: it is empty, where it names the latest checkpoint", path, ErrCorrupt))
	}
	if _, ok := parseStepName(name); !ok {
		if len(b) > 64 { // junk is shown, not all of it
			b = append(b[:64:64], "..."...)
		}
		return "", withRecovery(run, "", fmt.Errorf("train: %s: %w: %q is not a checkpoint's name", path, ErrCorrupt, b))
	}
	return filepath.Join(run, ckptDir, name), nil
}

// newestCheckpoint is the name of run's newest checkpoint whose manifest
// reads, or "".
func newestCheckpoint(run string) string {
	ents, err := os.ReadDir(filepath.Join(run, ckptDir))
	if err != nil {
		return ""
	}
	best, newest := -1, ""
	for _, e := range ents {
		step, ok := parseStepName(e.Name())
		if !ok || !e.IsDir() || step <= best {
			continue
		}
		if m, err := readManifest(filepath.Join(run, ckptDir, e.Name())); err == nil && m.Step == step {
			best, newest = step, e.Name()
		}
	}
	return newest
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
		if err := removeOwn(filepath.Join(base, stepName(step))); err != nil { // a file of the user's in it stays
			return fmt.Errorf("train: %w", err)
		}
	}
	return nil
}
