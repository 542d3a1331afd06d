package setdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/estkit/estkit/internal/store"
)

// marker is VerifiedName's contents: the files found intact, each by what
// changes when it is rewritten, copied or replaced (a rename gives a new
// inode; an in-place write a new mtime).
type marker struct {
	Manifest string       `json:"manifest_checksum"`
	Files    []markedFile `json:"files"`
}

type markedFile struct {
	Name    string `json:"name"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	Dev     uint64 `json:"dev"`
	Inode   uint64 `json:"inode"`
	ETag    string `json:"etag,omitempty"` // an object's (object storage)
}

func identify(dir store.Dir, e Entry) (markedFile, error) {
	st, err := dir.Stat(e.Name)
	if err != nil {
		return markedFile{}, err
	}
	return markedFile{Name: e.Name, SHA256: e.SHA256, Size: st.Size, MtimeNS: st.MtimeNS, Dev: st.Dev, Inode: st.Inode, ETag: st.ETag}, nil
}

// VerifyOnce checks the files against their sha256 unless dir's marker
// records that these very files (same size, mtime, device and inode, same
// manifest) were found intact; after a full check it records the marker
// (written atomically). manifest is the manifest's checksum. force checks
// in full whatever the marker says. Where the marker cannot be written (a
// read-only directory) every open verifies in full, and log says so. A
// cancelled ctx stops the check (context.Canceled) and records nothing.
func VerifyOnce(ctx context.Context, dir store.Dir, manifest string, files []Entry, corrupt error, force bool, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := &marker{Manifest: manifest}
	var bytes int64
	for _, e := range files {
		id, err := identify(dir, e)
		if err != nil {
			return err
		}
		if id.Size != e.Size {
			return fmt.Errorf("%s: %w: %d bytes, the manifest records %d (truncated or replaced)", dir.Join(e.Name), corrupt, id.Size, e.Size)
		}
		now.Files = append(now.Files, id)
		bytes += id.Size
	}
	if !force {
		if b, err := dir.ReadFile(VerifiedName); err == nil {
			var old marker
			if json.Unmarshal(b, &old) == nil && sameMarker(&old, now) {
				return nil
			}
		}
	}
	log.Info("verifying token shards (sha256 of every file: first open since they were written, copied or changed)", "dir", dir.String(), "files", len(files), "bytes", bytes)
	if err := verifyFiles(ctx, dir, files, corrupt); err != nil {
		if ctx.Err() != nil {
			return err // stopped, not damaged: the marker stays as it was
		}
		// A marker that vouches for these files must not outlive a check
		// that found one damaged (a change that kept size, mtime and
		// inode): the next open checks in full again.
		if rerr := dir.Remove(VerifiedName); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			log.Warn("cannot remove the verification marker of a damaged set", "dir", dir.String(), "err", rerr)
		}
		return err
	}
	b, err := json.Marshal(now)
	if err == nil {
		err = dir.WriteFile(VerifiedName, append(b, '\n'))
	}
	if err != nil {
		log.Warn("cannot record the verification beside the set (read-only directory?): every open of it verifies every file in full", "dir", dir.String(), "err", err)
	}
	return nil
}

func sameMarker(a, b *marker) bool {
	if a.Manifest != b.Manifest || len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		if a.Files[i] != b.Files[i] {
			return false
		}
	}
	return true
}
