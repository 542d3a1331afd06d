//go:build linux

package durable

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing bytes [off, off+n) of f
// to disk and returns without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE, which touches no metadata), so that the fsync at
// Commit finds little left to write. It is a hint: its error is ignored,
// and Commit's fsync is what makes the file durable.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
