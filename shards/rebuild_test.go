package shards

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFailedRebuildKeepsSet: rebuilding a token set with other options
// from an input that turns out damaged fails, and the set that was there
// is still whole: its manifest, every file it names, byte for byte, and a
// file of the user's that merely looks like a shard survives both the
// failed and a successful rebuild.
func TestFailedRebuildKeepsSet(t *testing.T) {
	docs := docSet(t, "go", 5, 256<<10)
	res := build(t, []string{docs}, Options{})
	user := filepath.Join(res.Dir, "train-00009.arrow")
	if err := os.WriteFile(user, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, res.Dir)

	// the same documents, one shard damaged after its set was written
	bad := filepath.Join(t.TempDir(), "docs")
	if err := os.CopyFS(bad, os.DirFS(docs)); err != nil {
		t.Fatal(err)
	}
	shardsOf, _ := filepath.Glob(filepath.Join(bad, "docs-*.arrow"))
	if len(shardsOf) == 0 {
		t.Fatal("no document shard")
	}
	b, _ := os.ReadFile(shardsOf[0])
	b[len(b)/2] ^= 1
	os.WriteFile(shardsOf[0], b, 0o644)

	_, err := Build(context.Background(), gpt2(t), []string{bad}, Options{OutDir: res.Dir, ValFraction: 0.2})
	if err == nil {
		t.Fatal("a damaged input built a set")
	}
	after := readAll(t, res.Dir)
	for name, data := range before {
		if string(after[name]) != string(data) {
			t.Errorf("%s changed by a failed rebuild (%d bytes, was %d)", name, len(after[name]), len(data))
		}
	}
	if s, err := Open(res.Dir, false); err != nil {
		t.Fatalf("the set after a failed rebuild: %v", err)
	} else {
		s.Close()
	}

	// a rebuild that succeeds replaces the set and leaves the user's file
	if _, err := Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: res.Dir, ValFraction: 0.2}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(user); err != nil || string(b) != "mine" {
		t.Errorf("the user's %s after a rebuild: %q %v", filepath.Base(user), b, err)
	}
}

// TestFailedVerifyDropsMarker: a full check (inspect --verify) that finds a
// damaged file removes the verified-once marker, so that training, which
// trusts the marker, checks in full again instead of using the file.
func TestFailedVerifyDropsMarker(t *testing.T) {
	docs := docSet(t, "go", 7, 128<<10)
	res := build(t, []string{docs}, Options{})
	s, err := Open(res.Dir, false) // records the marker
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	f := filepath.Join(res.Dir, res.Manifest.Splits[Train].Files[0].Name)
	st, _ := os.Stat(f)
	b, _ := os.ReadFile(f)
	b[len(b)/2] ^= 1
	// the same size, mtime and inode: the marker cannot see the change
	w, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt(b[len(b)/2:len(b)/2+1], int64(len(b)/2))
	w.Close()
	os.Chtimes(f, st.ModTime(), st.ModTime())
	if _, err := Open(res.Dir, true); err == nil {
		t.Fatal("a full check passed a damaged file")
	}
	if _, err := Open(res.Dir, false); err == nil {
		t.Fatal("after a failed full check, an open trusted the marker and used the damaged file")
	}
}

// TestOpenVerifyCancelled: the sha256 check of an open (all of a set's
// bytes, the first time) stops when its context is cancelled, as the first
// Ctrl-C of inspect or train asks, and records no marker.
func TestOpenVerifyCancelled(t *testing.T) {
	docs := docSet(t, "go", 9, 256<<10)
	res := build(t, []string{docs}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := OpenWith(res.Dir, OpenOptions{Full: true, Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, VerifiedName)); err == nil {
		t.Fatal("a cancelled check recorded the set as verified")
	}
}
