package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/estkit/estkit/internal/durable"
)

// Local is a directory of the local file system. Writes go through
// internal/durable: a temporary name, direct writes where the file system
// allows them, fsync, rename, fsync of the directory; the lock is a
// flock on its .lock file.
type Local string

func (d Local) String() string          { return string(d) }
func (d Local) Join(name string) string { return filepath.Join(string(d), name) }

func (d Local) List() ([]string, error) {
	ents, err := os.ReadDir(string(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if st, serr := os.Stat(string(d)); serr == nil && !st.IsDir() {
			return nil, fmt.Errorf("%s: %w", d, ErrNotDir)
		}
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

func (d Local) Stat(name string) (Info, error) {
	st, err := os.Stat(d.Join(name))
	if err != nil {
		return Info{}, err
	}
	in := Info{Size: st.Size(), MtimeNS: st.ModTime().UnixNano()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		in.Dev, in.Inode = uint64(s.Dev), uint64(s.Ino)
	}
	return in, nil
}

func (d Local) Open(name string) (File, error) {
	f, err := os.Open(d.Join(name))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return localFile{f, st.Size()}, nil
}

type localFile struct {
	*os.File
	size int64
}

func (f localFile) Size() int64 { return f.size }

func (d Local) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.Join(name)) }

func (d Local) WriteFile(name string, data []byte) error {
	return durable.WriteFile(string(d), name, data)
}

func (d Local) Create(name string) (Writer, error) { return durable.Create(string(d), name) }

func (d Local) Remove(name string) error {
	if err := os.Remove(d.Join(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (d Local) Make() (bool, error) {
	_, err := os.Stat(string(d))
	created := errors.Is(err, fs.ErrNotExist)
	return created, os.MkdirAll(string(d), 0o755)
}

func (d Local) RemoveDir() { os.Remove(string(d)) }

func (d Local) Lock(what string) (func(), error) { return durable.Lock(what, string(d)) }

func (d Local) Sync() error { return durable.SyncDir(string(d)) }

func (d Local) RemoveTemps() { durable.RemoveTemps(string(d)) }
