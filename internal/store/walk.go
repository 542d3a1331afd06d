package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
)

// Object is one object under a prefix: its name relative to the prefix
// (slash-separated, at any depth) and its version.
type Object struct {
	Name string
	Info Info
}

// Walk lists every object under the prefix at any depth (not only the
// flat directory List sees), sorted by name as a local walk orders files.
// Nothing under the prefix is an error wrapping fs.ErrNotExist, naming the
// URL; a missing bucket one wrapping ErrNoBucket.
func (d *S3) Walk() ([]Object, error) {
	var objs []Object
	for o := range d.c.ListObjects(d.ctx, d.bucket, minio.ListObjectsOptions{Prefix: d.prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, d.wrap("", o.Err)
		}
		// a key ending in / is a folder marker some tools create, not a file
		if n := strings.TrimPrefix(o.Key, d.prefix); n != "" && !strings.HasSuffix(n, "/") {
			objs = append(objs, Object{Name: n, Info: Info{Size: o.Size, MtimeNS: o.LastModified.UnixNano(), ETag: o.ETag}})
		}
	}
	if len(objs) == 0 {
		if ok, err := d.c.BucketExists(d.ctx, d.bucket); err != nil {
			return nil, d.wrap("", err)
		} else if !ok {
			return nil, d.wrap("", minio.ErrorResponse{Code: "NoSuchBucket"})
		}
		return nil, fmt.Errorf("%s: no object under this prefix: %w", d, fs.ErrNotExist)
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Name, b.Name) })
	return objs, nil
}

// Parent returns the Dir one level up and the last element of the prefix:
// where the object the URL itself would name lives. ok is false for a
// bucket's root.
func (d *S3) Parent() (parent *S3, name string, ok bool) {
	p := strings.TrimSuffix(d.prefix, "/")
	if p == "" {
		return nil, "", false
	}
	dir, name := path.Split(p)
	up := *d
	up.prefix = dir
	up.url = "s3://" + d.bucket + "/" + strings.TrimSuffix(dir, "/")
	return &up, name, true
}

// Download copies the object name, in the version want names (its ETag),
// to the new local file dst: an object replaced since it was listed is an
// error saying so, not another version's bytes. A failed download leaves
// no dst.
func (d *S3) Download(name string, want Info, dst string) (err error) {
	opts := minio.GetObjectOptions{}
	if want.ETag != "" {
		if err := opts.SetMatchETag(want.ETag); err != nil {
			return d.wrap(name, err)
		}
	}
	o, err := d.c.GetObject(d.ctx, d.bucket, d.key(name), opts)
	if err != nil {
		return d.wrap(name, err)
	}
	defer o.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	n, err := io.Copy(f, o)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return fmt.Errorf("%s: %w: replaced since it was listed (ETag %s); run again when it is stable", d.Join(name), ErrChanged, want.ETag)
		}
		if _, ok := err.(*fs.PathError); ok {
			return err // the local file's write: a full disk, named by its path
		}
		return d.wrap(name, err)
	}
	if n != want.Size {
		return fmt.Errorf("%s: %w: %d bytes downloaded, %d listed", d.Join(name), ErrChanged, n, want.Size)
	}
	return nil
}

// ErrChanged: an object changed between its listing and its download.
var ErrChanged = errors.New("object changed")

// CacheBase is the directory under which local copies of object storage
// files are kept: ESTKIT_S3_CACHE, else the user's cache directory's
// estkit/s3.
func CacheBase() string {
	if base := os.Getenv(EnvCache); base != "" {
		return base
	}
	c, err := os.UserCacheDir()
	if err != nil {
		c = os.TempDir()
	}
	return filepath.Join(c, "estkit", "s3")
}
