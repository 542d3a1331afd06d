// Package durable holds the file-system steps that make estkit's writes
// atomic and its output directories single-writer: write to a temporary
// name, fsync, rename, fsync the directory; and an exclusive lock per
// directory.
package durable

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

// TmpPrefix starts the name of every file not yet renamed into place.
const TmpPrefix = ".tmp-"

// WriteFile writes data to dir/name through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory.
func WriteFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, TmpPrefix+name)
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := SyncClose(f); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncClose fsyncs and closes f.
func SyncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir fsyncs a directory, so that renames into it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return err
	}
	return nil
}

// Lock takes an exclusive lock on dir (a .lock file in it) so that two
// processes never write one directory at once; the returned function
// releases it. what names the caller in the error.
func Lock(what, dir string) (func(), error) {
	p := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s is being written by another process (lock %s): %w", what, dir, p, err)
	}
	return func() { f.Close() }, nil
}

// Kind names what a file of mode m is, for an error that refuses what is
// not a regular file where estkit reads one: a named pipe would block the
// read, a device read without end, a directory fail on open.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// RemoveTemps deletes the temporary files a killed run left in dir.
func RemoveTemps(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TmpPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// File is a file written under a temporary name, hashed (sha256) and
// counted as it is written; Commit makes it visible under its name.
//
// Writes are buffered (Arrow's writers write each buffer, its padding and
// each message header separately, one system call each) and, where the
// file system allows it (Linux, O_DIRECT), go from the buffer straight to
// the disk without passing through the page cache. estkit's files are
// written once and not read back by the writer; through the page cache,
// writing them cost the kernel a fresh page per 4 KiB (0.04–0.44 s of
// system time per 160 MiB here, by how recently the machine's memory was
// used, against 0.01 s direct), and filled the cache the inputs are read
// through. Where direct writes are refused the File writes through the
// page cache and starts the disk writes as it goes (startWriteback).
type File struct {
	dir, name, tmp string
	f              *os.File
	buf            []byte // fileBuffer bytes at most, at an address aligned for direct writes
	direct         bool   // f is open for direct writes
	off, started   int64  // bytes written to f, and those whose writeback was started
	h              hash.Hash
	n              int64
}

// fileBuffer is File's write buffer: a multiple of directAlign.
const fileBuffer = 1 << 20

// directAlign is the alignment of a direct write's address, size and
// offset: 4096 satisfies disks of 512- and 4096-byte blocks.
const directAlign = 4096

// writebackEvery is how many bytes a File written through the page cache
// writes before it asks the kernel to start writing them to disk. Without
// it Commit's fsync wrote the whole file while its writer waited (estkit
// shard's sink, and the pipeline behind it, at every file it closes):
// 12–16 ms for a 40 MB token shard here, 2.5–4 ms with it.
const writebackEvery = 8 << 20

// Create starts dir/name as a temporary file.
func Create(dir, name string) (*File, error) {
	tmp := filepath.Join(dir, TmpPrefix+name)
	f, direct, err := createDirect(tmp)
	if err != nil {
		return nil, err
	}
	return &File{dir: dir, name: name, tmp: tmp, f: f, buf: alignedBuffer(fileBuffer), direct: direct, h: sha256.New()}, nil
}

// alignedBuffer returns an empty slice of capacity n whose first byte is
// at an address that is a multiple of directAlign (Go's heap does not move
// objects, so it stays there).
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip : skip+n]
}

// Name is the name the file will have.
func (f *File) Name() string { return f.name }

// Write buffers p; the buffer goes to the file whenever it is full.
func (f *File) Write(p []byte) (int, error) {
	f.h.Write(p)
	f.n += int64(len(p))
	for done := 0; done < len(p); {
		c := copy(f.buf[len(f.buf):cap(f.buf)], p[done:])
		f.buf = f.buf[:len(f.buf)+c]
		done += c
		if len(f.buf) == cap(f.buf) {
			if err := f.flush(); err != nil {
				return done, err
			}
		}
	}
	return len(p), nil
}

// flush writes the buffer to the file: directly when the file allows it
// and the buffer is whole blocks (all but a file's last write are), else
// through the page cache.
func (f *File) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	if f.direct && len(f.buf)%directAlign != 0 {
		f.endDirect()
	}
	_, err := f.f.Write(f.buf)
	if err != nil && f.direct && errors.Is(err, syscall.EINVAL) {
		// a file system that opens files for direct writes but refuses
		// them (some FUSE ones): write through the page cache instead
		f.endDirect()
		_, err = f.f.Write(f.buf)
	}
	if err != nil {
		return err
	}
	f.off += int64(len(f.buf))
	f.buf = f.buf[:0]
	if !f.direct && f.off-f.started >= writebackEvery {
		startWriteback(f.f, f.started, f.off-f.started)
		f.started = f.off
	}
	return nil
}

// endDirect turns f's direct writes off: its next writes go through the
// page cache.
func (f *File) endDirect() {
	endDirect(f.f)
	f.direct = false
}

// Commit fsyncs and closes the file and renames it into place; it returns
// the size and the hex sha256 of what was written. The caller fsyncs the
// directory before publishing (a manifest written with WriteFile does).
func (f *File) Commit() (int64, string, error) {
	if err := f.flush(); err != nil {
		f.f.Close()
		os.Remove(f.tmp)
		return 0, "", err
	}
	if err := SyncClose(f.f); err != nil {
		os.Remove(f.tmp)
		return 0, "", err
	}
	if err := os.Rename(f.tmp, filepath.Join(f.dir, f.name)); err != nil {
		return 0, "", err
	}
	return f.n, hex.EncodeToString(f.h.Sum(nil)), nil
}

// Abort closes and removes the temporary file.
func (f *File) Abort() {
	f.f.Close()
	os.Remove(f.tmp)
}
