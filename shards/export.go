package shards

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/estkit/estkit/internal/durable"
)

// Formats a split's token stream is exported in (estkit inspect --tokens;
// docs/FORMATS.md, "Token streams for other trainers").
const (
	// FormatJSONL: one JSON array of ids per document, separators
	// included, one document per line.
	FormatJSONL = "jsonl"
	// FormatInt32: the stream as little-endian int32, nothing else.
	FormatInt32 = "int32"
	// FormatNanoGPT: the stream as little-endian uint16, nothing else: the
	// train.bin and val.bin that nanoGPT's data/*/prepare.py write with
	// np.memmap(dtype=np.uint16) and its train.py reads the same way.
	FormatNanoGPT = "nanogpt"
	// FormatLLMC: llm.c's token file (dev/data/data_common.py
	// write_datafile for GPT-2, read by llmc/dataloader.h): a header of
	// 256 little-endian int32 (magic 20240520, version 1, the token count,
	// then zeros), then the tokens as little-endian uint16.
	FormatLLMC = "llmc"
)

// ExportFormats are the formats Export writes, in the order help text
// names them.
var ExportFormats = []string{FormatJSONL, FormatInt32, FormatNanoGPT, FormatLLMC}

// ErrExport: a stream that the format asked for cannot hold (ids past
// uint16 in a uint16 format, more tokens than a header counts).
var ErrExport = errors.New("token stream does not fit the format")

// llm.c's header: 256 int32, of which the first three are used. Its
// loader refuses any other magic or version, and a file whose size is not
// the header plus two bytes per counted token.
const (
	llmcHeaderInts = 256
	llmcMagic      = 20240520
	llmcVersion    = 1
)

// maxUint16ID is the largest id a uint16 format holds.
const maxUint16ID = math.MaxUint16

// exportChunk is how many tokens Export reads from the stream at a time.
const exportChunk = 1 << 16

// CheckExport says whether the stream can be written in format, before
// anything is written: an unknown format, a vocabulary with ids past
// 65535 in a uint16 format (never truncated), or, for llm.c, more tokens
// than its int32 header counts.
func (st *Stream) CheckExport(format string) error {
	info := st.set.Manifest.Tokenizer
	switch format {
	case FormatJSONL, FormatInt32:
		return nil
	case FormatNanoGPT, FormatLLMC:
	default:
		return fmt.Errorf("shards: export format %q (want %s)", format, strings.Join(ExportFormats, ", "))
	}
	if info.VocabSize > maxUint16ID+1 || info.TokenBits != 16 {
		return fmt.Errorf("shards: %s: %w: the %s format stores ids as uint16 (0 to %d), and the set's tokenizer %s has %d ids (%d-bit shards); write --format int32 or jsonl instead",
			st.set.Dir, ErrExport, format, maxUint16ID, info.Name, info.VocabSize, info.TokenBits)
	}
	if format == FormatLLMC && st.Tokens > math.MaxInt32 {
		return fmt.Errorf("shards: %s: %w: the %s split holds %d tokens and llm.c's header counts at most %d per file",
			st.set.Dir, ErrExport, st.Split, st.Tokens, math.MaxInt32)
	}
	return nil
}

// Export writes the stream to w in format (CheckExport's checks first,
// so that a refused format writes nothing). ctx is checked between chunks,
// so a long export stops at a Ctrl-C.
func (st *Stream) Export(ctx context.Context, w io.Writer, format string) error {
	if err := st.CheckExport(format); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var err error
	switch format {
	case FormatJSONL:
		err = st.Documents(func(ids []int32) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			b, err := json.Marshal(ids)
			if err != nil {
				return err
			}
			bw.Write(b)
			return bw.WriteByte('\n') // bufio's errors are sticky: this returns the Write's
		})
	case FormatInt32:
		err = st.exportRaw(ctx, bw, 4)
	case FormatNanoGPT:
		err = st.exportRaw(ctx, bw, 2)
	case FormatLLMC:
		if _, err = bw.Write(llmcHeader(st.Tokens)); err == nil {
			err = st.exportRaw(ctx, bw, 2)
		}
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// llmcHeader is llm.c's 1024-byte header for a file of n tokens (n fits
// an int32: CheckExport).
func llmcHeader(n int64) []byte {
	h := make([]byte, 4*llmcHeaderInts)
	binary.LittleEndian.PutUint32(h[0:], llmcMagic)
	binary.LittleEndian.PutUint32(h[4:], llmcVersion)
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
	return h
}

// exportRaw writes the stream as little-endian integers of size bytes (2:
// uint16, 4: int32).
func (st *Stream) exportRaw(ctx context.Context, w io.Writer, size int) error {
	buf := make([]int32, exportChunk)
	raw := make([]byte, size*exportChunk)
	for from := int64(0); from < st.Tokens; from += exportChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(exportChunk, st.Tokens-from)
		if err := st.Read(buf[:n], from); err != nil {
			return err
		}
		for i, v := range buf[:n] {
			if size == 2 {
				// 16-bit shards hold nothing wider (CheckExport); a value
				// that is would be a reader bug, never written truncated
				if uint32(v) > maxUint16ID {
					return fmt.Errorf("shards: %s: %w: token %d of the %s split is %d, past uint16", st.set.Dir, ErrExport, from+int64(i), st.Split, uint32(v))
				}
				binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
			} else {
				binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
			}
		}
		if _, err := w.Write(raw[:size*int(n)]); err != nil {
			return err
		}
	}
	return nil
}

// ExportFile writes the stream in format to the file path, atomically (a
// temporary name beside it, fsynced, renamed over path): a refused format,
// an error or a Ctrl-C leaves no file and no partial one. The directory
// is created when missing. A path inside the set's own directory is
// refused: the set holds only what its manifest lists.
func (st *Stream) ExportFile(ctx context.Context, path, format string) error {
	if err := st.CheckExport(format); err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	setDir, err := filepath.Abs(st.set.Dir)
	if err != nil {
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	if rel, err := filepath.Rel(setDir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("shards: export to %s: the path is inside the token shard set %s, which holds only the files its manifest lists: write it elsewhere", path, st.set.Dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return fmt.Errorf("shards: export to %s: is a directory; name the file to write (e.g. %s)", path, filepath.Join(path, st.Split+".bin"))
	}
	if err := exportTarget(path, abs); err != nil {
		return err
	}
	dir, name := filepath.Split(abs)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	f, err := durable.Create(dir, name)
	if err != nil {
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	if err := st.Export(ctx, f, format); err != nil {
		f.Abort()
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	if _, _, err := f.Commit(); err != nil {
		os.Remove(filepath.Join(dir, durable.TmpPrefix+name)) // Commit leaves it when the rename fails
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("shards: export to %s: %w", path, err)
	}
	return nil
}

// exportTarget refuses an export path whose file the atomic write would
// wrongly replace: one that is not a regular file (a FIFO, a device, a
// symlink, which the rename would replace by a regular file: --out
// /dev/null as root), or one in a directory that holds, or lies inside,
// an estkit set or run (whatever the path's spelling: symlinks resolved),
// whose files are its manifest's alone.
func exportTarget(path, abs string) error {
	if fi, err := os.Lstat(abs); err == nil && !fi.Mode().IsRegular() {
		what := durable.Kind(fi.Mode())
		if fi.Mode()&os.ModeSymlink != 0 {
			what = "a symlink (give the file it names, if that is a regular file)"
		}
		return fmt.Errorf("shards: export to %s: is %s, which an export (written beside it, then renamed over it) would replace: give a new or regular file", path, what)
	}
	dir := filepath.Dir(abs)
	for { // the nearest existing ancestor, symlinks resolved
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
			break
		}
		if filepath.Dir(dir) == dir {
			return nil
		}
		dir = filepath.Dir(dir)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if kind := estkitDir(d); kind != "" {
			return fmt.Errorf("shards: export to %s: the path is inside %s, %s, whose files are estkit's: write it elsewhere", path, d, kind)
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// estkitDir names what of estkit's dir holds: a document or token set (its
// manifest's schema) or a training run (its config.json's format), or "".
func estkitDir(dir string) string {
	var head struct {
		Schema string `json:"schema"`
		Format string `json:"format"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, ManifestName)); err == nil && json.Unmarshal(b, &head) == nil && strings.HasPrefix(head.Schema, "estkit.") {
		return "a set (" + head.Schema + ")"
	}
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil && json.Unmarshal(b, &head) == nil && head.Format == "estkit.run" {
		return "a training run"
	}
	return ""
}
