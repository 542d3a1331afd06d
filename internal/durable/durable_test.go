package durable

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestFileCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(dir, "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("estkit durable file")
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.bin")); err == nil {
		t.Fatal("visible before Commit")
	}
	size, sum, err := f.Commit()
	h := sha256.Sum256(data)
	if err != nil || size != int64(len(data)) || sum != hex.EncodeToString(h[:]) {
		t.Fatalf("commit: %d %s %v", size, sum, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.bin")); string(b) != string(data) {
		t.Fatalf("contents %q", b)
	}
	g, _ := Create(dir, "b.bin")
	g.Write(data)
	g.Abort()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("after Abort: %d entries", len(ents))
	}
	if err := WriteFile(dir, "c.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	unlock, err := Lock("test", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock("test", dir); err == nil {
		t.Fatal("a second lock on the same directory")
	}
	unlock()
}

// TestFileWriteback: a File larger than writebackEvery starts the disk
// writes of what it wrote as it goes, and still commits every byte.
func TestFileWriteback(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(dir, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*writebackEvery+12345)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	for p := data; len(p) > 0; { // writes of odd sizes, some larger than the buffer
		n := min(len(p), 1+len(p)%(3*fileBuffer))
		if _, err := f.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := f.w.Flush(); err != nil {
		t.Fatal(err)
	}
	// every write leaves less than writebackEvery bytes not yet started
	if started := f.wb.done; started <= 0 || int64(len(data))-started >= writebackEvery {
		t.Fatalf("writeback started for %d of %d bytes", started, len(data))
	}
	size, sum, err := f.Commit()
	h := sha256.Sum256(data)
	if err != nil || size != int64(len(data)) || sum != hex.EncodeToString(h[:]) {
		t.Fatalf("commit: %d %s %v", size, sum, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "big.bin")); string(b) != string(data) {
		t.Fatal("contents differ")
	}
}
