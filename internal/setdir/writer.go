package setdir

import (
	"fmt"

	"github.com/estkit/estkit/internal/store"
)

// Writer is the commit protocol of a content-addressed set, the one that
// ingest's document sets and shard's token sets share, over any store.Dir:
//
//	w, err := Begin(dir, schema, "ingest") // ownership, create, lock, ownership again
//	defer w.Close()
//	if the manifest in dir has the same key: w.Reuse(files…) // re-verified, not trusted
//	w.Start(prefixes, withdraw, key)       // claim, temporaries gone, a killed run's files found
//	… files through w.Files().Create / Commit …
//	w.Commit(manifest, keep, named)        // durable files, manifest last, stale files gone
//	or, on failure, w.Abort(committed, keep)
type Writer struct {
	Dir     store.Dir
	schema  string
	created bool // Begin created the directory
	unlock  func()
	files   *journalDir
}

// Begin checks that dir may hold a set of schema (Check), creates it,
// takes its lock and checks again under the lock (another process may
// have written it meanwhile). A refused directory is left exactly as it
// was. what names the caller ("ingest", "shards") in errors; part is the
// set's place in a split (--part; zero for a whole set), and a directory
// holding a set of another place is refused (CheckPart).
func Begin(dir store.Dir, schema, what string, part Part) (*Writer, error) {
	if err := Check(dir, schema); err != nil {
		return nil, fmt.Errorf("%s: --out %w", what, err)
	}
	if err := CheckPart(dir, part); err != nil {
		return nil, fmt.Errorf("%s: --out %w", what, err)
	}
	created, err := dir.Make()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	unlock, err := dir.Lock(what)
	if err != nil {
		return nil, err
	}
	err = Check(dir, schema)
	if err == nil {
		err = CheckPart(dir, part)
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("%s: --out %w", what, err)
	}
	return &Writer{Dir: dir, schema: schema, created: created, unlock: unlock}, nil
}

// Close releases the lock.
func (w *Writer) Close() { w.unlock() }

// Reuse checks the files of the set already in the directory (whose key
// is the one asked for) against their sha256: a file damaged since it was
// written is an error wrapping corrupt, and the caller rebuilds. Intact,
// the set is kept and what older or killed runs left beside it goes
// (temporaries, files named by an earlier manifest, named, or claimed).
func (w *Writer) Reuse(files []Entry, corrupt error, named []string) error {
	if err := VerifyFiles(w.Dir, files, corrupt); err != nil {
		return err
	}
	w.Dir.RemoveTemps()
	keep := map[string]bool{}
	for _, f := range files {
		keep[f.Name] = true
	}
	Settle(w.Dir, keep, named)
	return nil
}

// Start readies the directory for a new set of that key: it claims files
// named PREFIX + digits + ".arrow" (Claim) and removes a killed run's
// temporaries. withdraw removes the manifest already there first, for a
// writer whose file names do not change with the key (so that no reader
// pairs an older manifest with new files). The files a killed run of the
// same key committed, as their journal records them, are then reused by
// Files: a file whose new bytes have the recorded size and sha256, and
// whose stored version is still the one recorded, is not written again.
func (w *Writer) Start(prefixes []string, withdraw bool, key string) error {
	if err := Claim(w.Dir, w.schema, prefixes); err != nil {
		return err
	}
	if withdraw {
		if _, err := w.Dir.Stat(ManifestName); err == nil {
			if err := w.Dir.Remove(ManifestName); err != nil {
				return err
			}
			if err := w.Dir.Sync(); err != nil {
				return err
			}
		}
	}
	w.Dir.RemoveTemps()
	w.files = &journalDir{Dir: w.Dir, key: key, reuse: readJournal(w.Dir, key)}
	return nil
}

// Files is the directory the set's data files are written through after
// Start: each commit is recorded in the journal, and files a killed run
// left intact are reused.
func (w *Writer) Files() store.Dir { return w.files }

// Reused is the number of files the run took from a killed run instead of
// writing them again.
func (w *Writer) Reused() int {
	w.files.mu.Lock()
	defer w.files.mu.Unlock()
	return w.files.reused
}

// Commit makes the set visible: the files committed so far durable, then
// the manifest, last; then what the new manifest does not name goes
// (Settle: files an earlier manifest named, or a claimed run committed).
func (w *Writer) Commit(manifest []byte, keep map[string]bool, named []string) error {
	if err := w.Dir.Sync(); err != nil {
		return err
	}
	if err := Supersede(w.Dir, w.schema, named); err != nil {
		return err
	}
	if err := w.Dir.WriteFile(ManifestName, manifest); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	Settle(w.Dir, keep, named)
	return nil
}

// Abort undoes a failed run: the files it committed that the manifest
// still in the directory does not name (keep) go, with the temporaries,
// and the directory if Begin created it and nothing else is left.
func (w *Writer) Abort(committed []string, keep map[string]bool) {
	Unwind(w.Dir, committed, keep, w.created)
}
