package ingest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/estkit/estkit/internal/store"
)

// inputsCacheDir is the folder under store.CacheBase() that holds each
// run's temporary directory of downloaded inputs.
const inputsCacheDir = "ingest-inputs"

// remoteInputs are the inputs of one run that lie in object storage. Each
// is downloaded, in the version listed, into a temporary directory under
// the cache when it is first read (to recognise its format, or to hash
// it), and read there by the same readers as a local file: parquet and
// Arrow files need reads at any offset, tars and compressed streams a
// plain stream, and one local copy serves the hash and the parse alike.
// A part (--part) downloads only its share, unless --format auto must
// look into every file to recognise it. The directory goes at the run's
// end.
type remoteInputs struct {
	tmp string // created with the first listing of a URL
	n   int    // files named so far, to keep their local names apart
}

// remoteObject is an input in object storage.
type remoteObject struct {
	dir   *store.S3
	name  string
	info  store.Info
	local string // where it is downloaded to
}

// remove deletes the run's downloads.
func (r *remoteInputs) remove() {
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// list lists the inputs at the URL root: the one object it names, or every
// object under it (sorted by name, as a local walk orders files), passing
// by hidden names and the output set as a local walk does. single says the
// URL named one object.
func (r *remoteInputs) list(ctx context.Context, root string, o *Options) (files []*Input, ignored []Ignored, single bool, err error) {
	d, err := store.OpenS3(ctx, root)
	if err != nil {
		return nil, nil, false, fmt.Errorf("ingest: %w", err)
	}
	if r.tmp == "" {
		base := filepath.Join(store.CacheBase(), inputsCacheDir)
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, nil, false, fmt.Errorf("ingest: downloads of %s: %w", root, err)
		}
		if r.tmp, err = os.MkdirTemp(base, "run-"); err != nil {
			return nil, nil, false, fmt.Errorf("ingest: downloads of %s: %w", root, err)
		}
	}
	add := func(dir *store.S3, name, rel, lang string, info store.Info) {
		r.n++
		files = append(files, &Input{Root: root, Rel: rel, Size: info.Size, Lang: lang,
			remote: &remoteObject{dir: dir, name: name, info: info, local: filepath.Join(r.tmp, fmt.Sprintf("%d-%s", r.n, path.Base(name)))}})
	}
	// The URL names one object when one is there by that key; else a prefix.
	if parent, name, ok := d.Parent(); ok {
		info, err := parent.Stat(name)
		if err == nil {
			lang := path.Base(strings.TrimSuffix(parent.Prefix(), "/"))
			if parent.Prefix() == "" {
				lang = parent.Bucket()
			}
			add(parent, name, name, lang, info)
			return files, nil, true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, false, fmt.Errorf("ingest: %w", err)
		}
	}
	objs, err := d.Walk()
	if err != nil {
		return nil, nil, false, fmt.Errorf("ingest: %w", err)
	}
	// the output set inside the input prefix is not input
	outRel := "\x00"
	if store.IsURL(o.OutDir) {
		if out, err := store.OpenS3(ctx, o.OutDir); err == nil && out.Bucket() == d.Bucket() && strings.HasPrefix(out.Prefix(), d.Prefix()) {
			outRel = strings.TrimSuffix(strings.TrimPrefix(out.Prefix(), d.Prefix()), "/")
		}
	}
	rootBase := d.Base()
	if d.Prefix() == "" {
		rootBase = d.Bucket()
	}
	seen := map[string]bool{} // what was ignored by a folder's name, once
	skip := func(p, why string) {
		if !seen[p] {
			seen[p] = true
			ignored = append(ignored, Ignored{Path: p, Reason: why})
		}
	}
	for _, ob := range objs {
		rel := ob.Name
		if outRel == "" || strings.HasPrefix(rel, outRel+"/") {
			skip(outRel, "the output directory")
			continue
		}
		// Hidden files and folders (.git, .cache) are not data, as locally.
		elems := strings.Split(rel, "/")
		hidden := -1
		for i, e := range elems {
			if strings.HasPrefix(e, ".") {
				hidden = i
				break
			}
		}
		if hidden >= 0 {
			skip(strings.Join(elems[:hidden+1], "/"), "hidden")
			continue
		}
		lang := path.Base(path.Dir(rel))
		if lang == "." {
			lang = rootBase
		}
		add(d, rel, rel, lang, ob.Info)
	}
	return files, ignored, false, nil
}

// fetch downloads a remote input to its local copy, once; a local input
// is there already.
func (in *Input) fetch() error {
	ro := in.remote
	if ro == nil || in.Path != "" {
		return nil
	}
	if err := ro.dir.Download(ro.name, ro.info, ro.local); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	in.Path = ro.local
	return nil
}

// where names the input in messages: its path, or its URL.
func (in *Input) where() string {
	if in.remote != nil {
		return in.remote.dir.Join(in.remote.name)
	}
	return in.Path
}
