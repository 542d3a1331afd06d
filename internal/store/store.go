// Package store is the storage a set of files lives in, as estkit's set
// writers and readers (internal/setdir, ingest, shards) see it: a flat
// directory of named files that can be listed, read at any offset, written
// through a create-then-commit step that makes a file visible whole or not
// at all, and removed; plus the single-writer lock and the identity of a
// file's current version that the verified-once marker keys on. Two
// implementations: a local directory (Local: today's file-system steps of
// internal/durable, fsyncs and direct writes included) and an object
// storage prefix (S3, s3://bucket/prefix).
package store

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
)

// Dir is one directory of a set.
type Dir interface {
	// String is the directory's path or URL, for messages.
	String() string
	// Join is a file's path or URL, for messages.
	Join(name string) string
	// List returns the names of the files directly in the directory
	// (sorted); a missing directory is an error wrapping fs.ErrNotExist,
	// a path that is a file one wrapping ErrNotDir.
	List() ([]string, error)
	// Stat describes a file; a missing one is fs.ErrNotExist.
	Stat(name string) (Info, error)
	// Open opens a file for reading at any offset.
	Open(name string) (File, error)
	// ReadFile reads a whole (small) file.
	ReadFile(name string) ([]byte, error)
	// WriteFile commits a whole (small) file atomically.
	WriteFile(name string, data []byte) error
	// Create starts a file that becomes visible only at its Commit.
	Create(name string) (Writer, error)
	// Remove deletes a file; a missing one is no error.
	Remove(name string) error
	// Make creates the directory where it is missing; created says it
	// was.
	Make() (created bool, err error)
	// RemoveDir removes the (empty) directory itself, best effort.
	RemoveDir()
	// Lock keeps other processes from writing the directory until the
	// returned function is called; what names the caller in errors.
	Lock(what string) (unlock func(), err error)
	// Sync makes the files committed so far durable before a manifest
	// names them.
	Sync() error
	// RemoveTemps deletes what a killed writer left unfinished.
	RemoveTemps()
}

// Info identifies a file's current version: what changes when it is
// rewritten, copied or replaced. Local files: size, mtime, device and
// inode; objects: size, modification time and ETag.
type Info struct {
	Size    int64
	MtimeNS int64
	Dev     uint64
	Inode   uint64
	ETag    string
}

// File is a file open for reading.
type File interface {
	io.Reader
	io.ReaderAt
	io.Closer
	Size() int64
}

// Writer is a file being written: hashed (sha256) and counted as it is
// written, visible under its name only once Commit returns.
type Writer interface {
	io.Writer
	Name() string
	// Commit makes the file visible and returns its size and hex sha256.
	Commit() (int64, string, error)
	// Abort drops the file.
	Abort()
}

// ErrNotDir: a local path that should be a directory is a file.
var ErrNotDir = errors.New("not a directory")

// IsURL reports whether loc names object storage (s3://bucket/prefix)
// rather than a local path.
func IsURL(loc string) bool { return strings.HasPrefix(loc, "s3://") }

// Open returns the Dir loc names: an s3:// URL (object storage) or a
// local path. ctx bounds every request an object storage Dir makes.
func Open(ctx context.Context, loc string) (Dir, error) {
	if IsURL(loc) {
		return OpenS3(ctx, loc)
	}
	return Local(loc), nil
}

// CacheDir is where a local copy of the set at an s3:// URL is kept:
// ESTKIT_S3_CACHE, else the user's cache directory, then estkit/s3/BUCKET/PREFIX.
func CacheDir(d *S3) string {
	return filepath.Join(CacheBase(), d.bucket, filepath.FromSlash(strings.TrimSuffix(d.prefix, "/")))
}

// EnvCache overrides the directory of local copies of object storage sets.
const EnvCache = "ESTKIT_S3_CACHE"
