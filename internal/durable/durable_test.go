package durable

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
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

// TestFileLarge: a File of many buffers commits every byte, written in
// odd sizes, directly where the file system allows it (all but the last
// partial block) and through the page cache, where it starts the disk
// writes as it goes.
func TestFileLarge(t *testing.T) {
	data := make([]byte, 2*writebackEvery+12345)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	for _, tc := range []struct {
		name   string
		direct bool
	}{{"direct", true}, {"page-cache", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := Create(dir, "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			if tc.direct && !f.direct {
				t.Skipf("%s refuses direct writes", dir)
			}
			if !tc.direct {
				f.endDirect()
			}
			for p := data; len(p) > 0; { // some writes larger than the buffer
				n := min(len(p), 1+len(p)%(3*fileBuffer))
				if k, err := f.Write(p[:n]); err != nil || k != n {
					t.Fatal(k, err)
				}
				p = p[n:]
			}
			if f.direct != tc.direct {
				t.Fatalf("direct %v after the whole buffers", f.direct)
			}
			if !tc.direct {
				// every flush leaves less than writebackEvery bytes not yet started
				if f.started <= 0 || f.off-f.started >= writebackEvery {
					t.Fatalf("writeback started for %d of %d bytes", f.started, f.off)
				}
			}
			size, sum, err := f.Commit()
			h := sha256.Sum256(data)
			if err != nil || size != int64(len(data)) || sum != hex.EncodeToString(h[:]) {
				t.Fatalf("commit: %d %s %v", size, sum, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "big.bin")); string(b) != string(data) {
				t.Fatal("contents differ")
			}
		})
	}
}

func TestAlignedBuffer(t *testing.T) {
	for range 8 {
		b := alignedBuffer(fileBuffer)
		if len(b) != 0 || cap(b) != fileBuffer || uintptr(unsafe.Pointer(&b[:1][0]))%directAlign != 0 {
			t.Fatalf("len %d cap %d at %p", len(b), cap(b), &b[:1][0])
		}
	}
}

// TestKind: each kind of file is named as the refusals print it.
func TestKind(t *testing.T) {
	for m, want := range map[fs.FileMode]string{
		0o644:                             "a regular file",
		fs.ModeDir | 0o755:                "a directory",
		fs.ModeSymlink | 0o777:            "a symbolic link",
		fs.ModeNamedPipe | 0o644:          "a named pipe (FIFO)",
		fs.ModeDevice | fs.ModeCharDevice: "a character device",
		fs.ModeDevice:                     "a device",
		fs.ModeSocket:                     "a socket",
		fs.ModeIrregular:                  "a special file",
	} {
		if got := Kind(m); got != want {
			t.Errorf("Kind(%v) = %q, want %q", m, got, want)
		}
	}
}
