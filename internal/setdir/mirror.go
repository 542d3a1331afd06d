package setdir

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/estkit/estkit/internal/store"
)

// Mirror copies the set in src (manifest, its raw bytes already read and
// checked by the caller, and the files it names) into the local directory
// dst, so that readers that map files (training) read a set from object
// storage: each file is checked against its sha256 as it downloads, files
// already in dst that verify are kept, and the manifest is written last
// (an older one withdrawn first), so that an interrupted copy is never
// taken for a set.
func Mirror(src store.Dir, dst string, manifest []byte, files []Entry, corrupt error) error {
	local := store.Local(dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	unlock, err := local.Lock("mirror")
	if err != nil {
		return err
	}
	defer unlock()
	if old, err := local.ReadFile(ManifestName); err == nil && bytes.Equal(old, manifest) {
		if VerifyFiles(local, files, corrupt) == nil {
			return nil
		}
	}
	if err := local.Remove(ManifestName); err != nil {
		return err
	}
	local.RemoveTemps()
	for _, e := range files {
		if VerifyFile(local, e, corrupt) == nil {
			continue
		}
		if err := download(src, local, e, corrupt); err != nil {
			return err
		}
	}
	if err := local.Sync(); err != nil {
		return err
	}
	return local.WriteFile(ManifestName, manifest)
}

func download(src store.Dir, dst store.Local, e Entry, corrupt error) error {
	f, err := src.Open(e.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := dst.Create(e.Name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, f); err != nil {
		w.Abort()
		return fmt.Errorf("%s: download: %w", src.Join(e.Name), err)
	}
	n, sum, err := w.Commit()
	if err != nil {
		return err
	}
	if n != e.Size || sum != e.SHA256 {
		dst.Remove(e.Name)
		return fmt.Errorf("%s: %w: %d bytes of sha256 %s, the manifest records %d bytes of %s", src.Join(e.Name), corrupt, n, sum, e.Size, e.SHA256)
	}
	return nil
}
