//go:build !linux

package durable

import "os"

// createDirect creates path; direct writes are Linux's (O_DIRECT).
func createDirect(path string) (*os.File, bool, error) {
	f, err := os.Create(path)
	return f, false, err
}

func endDirect(*os.File) {}

// startWriteback is Linux's sync_file_range hint; elsewhere Commit's fsync
// writes everything.
func startWriteback(*os.File, int64, int64) {}
