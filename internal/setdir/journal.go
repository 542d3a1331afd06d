package setdir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/estkit/estkit/internal/store"
)

// JournalPrefix starts the name of the small record a writer commits
// beside each data file it commits (JournalPrefix + the file's name): the
// set's key, the file's size and sha256 and the identity of the stored
// version (store.Info). A run killed before its manifest leaves them; a
// re-run of the same key reuses each file whose record still matches the
// stored version, instead of writing it again. Settle removes them with
// the claim.
const JournalPrefix = ".estkit-committed."

type journalEntry struct {
	Key  string     `json:"key"`
	File Entry      `json:"file"`
	Info store.Info `json:"info"`
}

// readJournal returns the files a killed run of key committed that are
// still there as it left them; records of other keys, or of files changed
// or gone since, are removed.
func readJournal(dir store.Dir, key string) map[string]journalEntry {
	out := map[string]journalEntry{}
	names, err := dir.List()
	if err != nil {
		return out
	}
	for _, n := range names {
		file, ok := strings.CutPrefix(n, JournalPrefix)
		if !ok {
			continue
		}
		var e journalEntry
		b, err := dir.ReadFile(n)
		if err == nil && json.Unmarshal(b, &e) == nil && e.Key == key && e.File.Name == file {
			if st, err := dir.Stat(file); err == nil && st == e.Info && st.Size == e.File.Size {
				out[file] = e
				continue
			}
		}
		dir.Remove(n)
	}
	return out
}

// removeJournal removes the records of the files in only (nil: all).
func removeJournal(dir store.Dir, only map[string]bool) {
	names, _ := dir.List()
	for _, n := range names {
		if file, ok := strings.CutPrefix(n, JournalPrefix); ok && (only == nil || only[file]) {
			dir.Remove(n)
		}
	}
}

// journalDir is the Dir a Writer's caller writes data files through: each
// commit is recorded, and a file a killed run of the same key committed
// is not written again when its new bytes are the same.
type journalDir struct {
	store.Dir
	key    string
	mu     sync.Mutex
	reuse  map[string]journalEntry
	reused int
}

// record notes a committed file beside it.
func (j *journalDir) record(name string, n int64, sum string) {
	st, err := j.Dir.Stat(name)
	if err != nil {
		return // best effort: an unrecorded file is rebuilt by a re-run
	}
	b, err := json.Marshal(journalEntry{Key: j.key, File: Entry{Name: name, Size: n, SHA256: sum}, Info: st})
	if err == nil {
		j.Dir.WriteFile(JournalPrefix+name, b)
	}
}

func (j *journalDir) Create(name string) (store.Writer, error) {
	j.mu.Lock()
	e, ok := j.reuse[name]
	delete(j.reuse, name)
	j.mu.Unlock()
	if ok {
		// the new bytes go to a local spool first: if they are the
		// killed run's (size and sha256), nothing is written
		f, err := os.CreateTemp("", "estkit-spool-*")
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", name, err)
		}
		return &spoolWriter{j: j, name: name, old: e, f: f, h: sha256.New()}, nil
	}
	w, err := j.Dir.Create(name)
	if err != nil {
		return nil, err
	}
	return &journalWriter{Writer: w, j: j}, nil
}

type journalWriter struct {
	store.Writer
	j *journalDir
}

func (w *journalWriter) Commit() (int64, string, error) {
	n, sum, err := w.Writer.Commit()
	if err == nil {
		w.j.record(w.Name(), n, sum)
	}
	return n, sum, err
}

type spoolWriter struct {
	j    *journalDir
	name string
	old  journalEntry
	f    *os.File
	h    hash.Hash
	n    int64
}

func (w *spoolWriter) Name() string { return w.name }

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool %s: %w", w.name, err)
	}
	return n, nil
}

func (w *spoolWriter) Commit() (int64, string, error) {
	defer w.Abort()
	sum := hex.EncodeToString(w.h.Sum(nil))
	if w.n == w.old.File.Size && sum == w.old.File.SHA256 {
		if st, err := w.j.Dir.Stat(w.name); err == nil && st == w.old.Info {
			w.j.mu.Lock()
			w.j.reused++
			w.j.mu.Unlock()
			return w.n, sum, nil // the killed run's file, as it left it
		}
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return 0, "", fmt.Errorf("spool %s: %w", w.name, err)
	}
	out, err := w.j.Dir.Create(w.name)
	if err != nil {
		return 0, "", err
	}
	if _, err := io.Copy(out, w.f); err != nil {
		out.Abort()
		return 0, "", err
	}
	n, got, err := out.Commit()
	if err == nil {
		w.j.record(w.name, n, got)
	}
	return n, got, err
}

func (w *spoolWriter) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}
