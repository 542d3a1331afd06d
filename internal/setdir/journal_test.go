package setdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// killedDir is a Dir of a process killed while it writes: the Create of
// file number killAt fails, and nothing is deleted after (a killed process
// cleans up nothing).
type killedDir struct {
	store.Dir
	creates, killAt int
}

var errKilled = errors.New("killed")

func (d *killedDir) Create(name string) (store.Writer, error) {
	d.creates++
	if d.creates == d.killAt {
		return nil, errKilled
	}
	return d.Dir.Create(name)
}
func (d *killedDir) Remove(string) error { return nil }
func (d *killedDir) RemoveTemps()        {}

// countDir counts the files written into a Dir.
type countDir struct {
	store.Dir
	creates []string
}

func (d *countDir) Create(name string) (store.Writer, error) {
	d.creates = append(d.creates, name)
	return d.Dir.Create(name)
}

func content(i int, salt string) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "file %d %s\n", i, salt), 1000+i)
}

// write commits files 0..n-1 of salt through w.Files(), stopping at the
// first error.
func write(w *Writer, n int, salt string) ([]string, error) {
	var committed []string
	for i := range n {
		name := fmt.Sprintf("train-%05d.arrow", i)
		f, err := w.Files().Create(name)
		if err != nil {
			return committed, err
		}
		if _, err := f.Write(content(i, salt)); err != nil {
			f.Abort()
			return committed, err
		}
		if _, _, err := f.Commit(); err != nil {
			return committed, err
		}
		committed = append(committed, name)
	}
	return committed, nil
}

// TestResumeKilledRun: a re-run of the same key reuses the files a killed
// run committed (same size and sha256, the stored version unchanged)
// instead of writing them again, and writes the rest; a re-run of another
// key, or a file changed since, writes them again; the journal goes with
// the claim. On the local disk and on object storage (a real MinIO).
func TestResumeKilledRun(t *testing.T) {
	t.Run("local", func(t *testing.T) { testResume(t, store.Local(filepath.Join(t.TempDir(), "set"))) })
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		d, err := store.Open(context.Background(), srv.Bucket(t, "sets", "tok"))
		if err != nil {
			t.Fatal(err)
		}
		testResume(t, d)
	})
}

func testResume(t *testing.T, d store.Dir) {
	const n = 5
	kill := func(key, salt string, at int) {
		t.Helper()
		kd := &killedDir{Dir: d, killAt: at}
		w, err := Begin(kd, TokenSchema, "test", Part{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start([]string{"train-"}, true, key); err != nil {
			t.Fatal(err)
		}
		committed, err := write(w, n, salt)
		if !errors.Is(err, errKilled) {
			t.Fatalf("the killed run: %v", err)
		}
		w.Abort(committed, nil) // deletes nothing: the process is gone
		w.Close()
	}
	rerun := func(key, salt string) (*countDir, *Writer) {
		t.Helper()
		cd := &countDir{Dir: d}
		w, err := Begin(cd, TokenSchema, "test", Part{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if err := w.Start([]string{"train-"}, true, key); err != nil {
			t.Fatal(err)
		}
		names, err := write(w, n, salt)
		if err != nil {
			t.Fatal(err)
		}
		keep := map[string]bool{}
		for _, name := range names {
			keep[name] = true
		}
		if err := w.Commit([]byte(`{"schema":"estkit.tokshards"}`), keep, nil); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			b, err := d.ReadFile(fmt.Sprintf("train-%05d.arrow", i))
			if err != nil || !bytes.Equal(b, content(i, salt)) {
				t.Fatalf("file %d after the re-run: %v", i, err)
			}
		}
		names, _ = d.List()
		for _, name := range names {
			if strings.HasPrefix(name, JournalPrefix) || name == ClaimName {
				t.Fatalf("%s outlived the set: %v", name, names)
			}
		}
		return cd, w
	}

	kill("k1", "a", 3) // files 0 and 1 committed
	if _, err := d.Stat(ManifestName); err == nil {
		t.Fatal("a killed run left a manifest")
	}
	cd, w := rerun("k1", "a")
	if w.Reused() != 2 || !slices.Equal(cd.creates, []string{"train-00002.arrow", "train-00003.arrow", "train-00004.arrow"}) {
		t.Fatalf("same key: reused %d, wrote %v; want files 0 and 1 reused", w.Reused(), cd.creates)
	}

	kill("k2", "b", 3)
	cd, w = rerun("k3", "b") // another key: nothing reused
	if w.Reused() != 0 || len(cd.creates) != n {
		t.Fatalf("another key: reused %d, wrote %v", w.Reused(), cd.creates)
	}

	kill("k4", "c", 4) // files 0, 1, 2
	if err := d.WriteFile("train-00001.arrow", []byte("changed since")); err != nil {
		t.Fatal(err)
	}
	cd, w = rerun("k4", "c")
	if w.Reused() != 2 || !slices.Equal(cd.creates, []string{"train-00001.arrow", "train-00003.arrow", "train-00004.arrow"}) {
		t.Fatalf("a file changed since: reused %d, wrote %v; want 0 and 2 reused", w.Reused(), cd.creates)
	}

	kill("k5", "d", 3)
	cd, w = rerun("k5", "e") // same key, other bytes (a damaged input, say): written
	if w.Reused() != 0 || len(cd.creates) != n {
		t.Fatalf("other bytes: reused %d, wrote %v", w.Reused(), cd.creates)
	}
}
