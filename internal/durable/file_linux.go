//go:build linux

package durable

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// createDirect creates path for direct writes (O_DIRECT), or, where the
// file system refuses them (tmpfs before Linux 6.6, some network and FUSE
// file systems), for writes through the page cache; direct says which.
func createDirect(path string) (f *os.File, direct bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_DIRECT, 0o666)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, syscall.EINVAL) {
		return nil, false, err
	}
	f, err = os.Create(path)
	return f, false, err
}

// endDirect clears O_DIRECT on f. Should that fail, the next write
// fails with EINVAL, which File.flush answers by calling endDirect again;
// a write that then still fails is the caller's error.
func endDirect(f *os.File) {
	withFD(f, func(fd uintptr) {
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil {
			unix.FcntlInt(fd, unix.F_SETFL, fl&^unix.O_DIRECT)
		}
	})
}

// startWriteback asks the kernel to start writing bytes [off, off+n) of f
// to disk and returns without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE, which touches no metadata), so that the fsync at
// Commit finds little left to write. It is a hint: its error is ignored,
// and Commit's fsync is what makes the file durable.
func startWriteback(f *os.File, off, n int64) {
	withFD(f, func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// withFD runs fn on f's descriptor (through SyscallConn, which, unlike
// Fd, leaves the file's mode alone); both callers' system calls are hints
// or have a fallback, so a file without one is skipped.
func withFD(f *os.File, fn func(fd uintptr)) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(fn)
	}
}
