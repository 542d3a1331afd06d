package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The environment that configures object storage (docs/ARCHITECTURE.md,
// "Object storage"). Credentials come from the usual places: the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN; or MinIO's MINIO_ROOT_USER, MINIO_ROOT_PASSWORD),
// then the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
// ~/.aws/credentials) under the profile AWS_PROFILE (default "default").
const (
	// EnvEndpoint: the server, as host:port or a URL (http:// for a
	// server without TLS); default s3.amazonaws.com.
	EnvEndpoint = "ESTKIT_S3_ENDPOINT"
	// EnvPathStyle: "1" addresses buckets by path (host/bucket/key), as
	// most S3-compatible servers want; "0" by virtual host
	// (bucket.host/key); unset: the client's choice (virtual host on AWS,
	// path elsewhere).
	EnvPathStyle = "ESTKIT_S3_PATH_STYLE"
	// EnvRegion: the bucket's region (else AWS_REGION, else asked of the
	// server).
	EnvRegion = "ESTKIT_S3_REGION"
)

// Upload sizes: files are uploaded in parts of partSize (a multipart
// upload), partThreads at once; one file holds partSize·partThreads of
// memory while it uploads.
const (
	partSize    = 16 << 20
	partThreads = 4
)

// LeaseTTL is how long a writer's lock (a lease object) holds without
// being renewed; the writer renews it every LeaseTTL/4.
var LeaseTTL = 10 * time.Minute

// S3 is a prefix of a bucket of an S3-compatible object store: the files
// of a set are the objects PREFIX/NAME.
type S3 struct {
	ctx    context.Context
	url    string // s3://bucket/prefix, as given (without a trailing /)
	bucket string
	prefix string // "" or ending in "/"
	c      *minio.Client
}

// OpenS3 returns the S3 Dir of loc, s3://bucket/prefix, configured from
// the environment. It makes no request.
func OpenS3(ctx context.Context, loc string) (*S3, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("%s: not an object storage URL (want s3://bucket/prefix)", loc)
	}
	prefix := strings.Trim(u.Path, "/")
	if slices.Contains(strings.Split(prefix, "/"), "..") || strings.Contains(prefix, "//") {
		return nil, fmt.Errorf("%s: a prefix with an empty or \"..\" element", loc)
	}
	if prefix != "" {
		prefix += "/"
	}
	endpoint, secure := "s3.amazonaws.com", true
	if e := os.Getenv(EnvEndpoint); e != "" {
		endpoint = e
		if eu, err := url.Parse(e); err == nil && (eu.Scheme == "http" || eu.Scheme == "https") {
			endpoint, secure = eu.Host, eu.Scheme == "https"
		}
	}
	lookup := minio.BucketLookupAuto
	switch v := os.Getenv(EnvPathStyle); v {
	case "":
	case "1", "true":
		lookup = minio.BucketLookupPath
	case "0", "false":
		lookup = minio.BucketLookupDNS
	default:
		return nil, fmt.Errorf("%s=%q: want 1 (path-style) or 0 (virtual-host style)", EnvPathStyle, v)
	}
	region := os.Getenv(EnvRegion)
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	// No instance-metadata provider: estkit never reaches for a network
	// address the user did not name.
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.EnvMinio{},
		&credentials.FileAWSCredentials{Profile: os.Getenv("AWS_PROFILE")},
	})
	c, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: secure, Region: region, BucketLookup: lookup})
	if err != nil {
		return nil, fmt.Errorf("%s: endpoint %s: %w", loc, endpoint, err)
	}
	return &S3{ctx: ctx, url: "s3://" + u.Host + "/" + strings.TrimSuffix(prefix, "/"), bucket: u.Host, prefix: prefix, c: c}, nil
}

func (d *S3) String() string          { return strings.TrimSuffix(d.url, "/") }
func (d *S3) Join(name string) string { return d.String() + "/" + name }
func (d *S3) key(name string) string  { return d.prefix + name }

// wrap turns a client error into one naming the URL, with fs.ErrNotExist
// for a missing object and words for the usual misconfigurations.
func (d *S3) wrap(name string, err error) error {
	where := d.String()
	if name != "" {
		where = d.Join(name)
	}
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "NoSuchKey":
		return fmt.Errorf("%s: %w", where, fs.ErrNotExist)
	case "NoSuchBucket":
		return fmt.Errorf("%s: bucket %q does not exist (endpoint %s): %w", where, d.bucket, d.c.EndpointURL().Host, ErrNoBucket)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken":
		return fmt.Errorf("%s: %w: %s (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the shared credentials file under AWS_PROFILE)", where, ErrDenied, r.Message)
	}
	if r.StatusCode == 0 && r.Code == "" {
		return fmt.Errorf("%s: cannot reach endpoint %s (%s=%q): %w", where, d.c.EndpointURL().Host, EnvEndpoint, os.Getenv(EnvEndpoint), err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Errors of object storage that callers and tests tell apart.
var (
	ErrNoBucket = errors.New("no such bucket")
	ErrDenied   = errors.New("access denied")
)

func (d *S3) List() ([]string, error) {
	var names []string
	for o := range d.c.ListObjects(d.ctx, d.bucket, minio.ListObjectsOptions{Prefix: d.prefix}) {
		if o.Err != nil {
			return nil, d.wrap("", o.Err)
		}
		if n := strings.TrimPrefix(o.Key, d.prefix); n != "" && !strings.HasSuffix(n, "/") {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		// a prefix is missing when nothing is under it; the bucket must be there
		if ok, err := d.c.BucketExists(d.ctx, d.bucket); err != nil {
			return nil, d.wrap("", err)
		} else if !ok {
			return nil, d.wrap("", minio.ErrorResponse{Code: "NoSuchBucket"})
		}
		return nil, fmt.Errorf("%s: %w", d, fs.ErrNotExist)
	}
	slices.Sort(names)
	return names, nil
}

func (d *S3) Stat(name string) (Info, error) {
	st, err := d.c.StatObject(d.ctx, d.bucket, d.key(name), minio.StatObjectOptions{})
	if err != nil {
		return Info{}, d.wrap(name, err)
	}
	return Info{Size: st.Size, MtimeNS: st.LastModified.UnixNano(), ETag: st.ETag}, nil
}

func (d *S3) Open(name string) (File, error) {
	o, err := d.c.GetObject(d.ctx, d.bucket, d.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, d.wrap(name, err)
	}
	st, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, d.wrap(name, err)
	}
	return &s3File{Object: o, size: st.Size, d: d, name: name}, nil
}

type s3File struct {
	*minio.Object
	size int64
	d    *S3
	name string
}

func (f *s3File) Size() int64 { return f.size }

func (f *s3File) Read(p []byte) (int, error) {
	n, err := f.Object.Read(p)
	if err != nil && err != io.EOF {
		err = f.d.wrap(f.name, err)
	}
	return n, err
}

func (f *s3File) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.Object.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = f.d.wrap(f.name, err)
	}
	return n, err
}

func (d *S3) ReadFile(name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFile is one PUT: an object appears whole or not at all.
func (d *S3) WriteFile(name string, data []byte) error {
	_, err := d.c.PutObject(d.ctx, d.bucket, d.key(name), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{SendContentMd5: true})
	if err != nil {
		return d.wrap(name, err)
	}
	return nil
}

// Create streams the file to a multipart upload as it is written (each
// part's MD5 checked by the server); the object appears only when the
// upload completes at Commit, which then checks its size. An upload cut
// short (a killed run) leaves no object, only parts that RemoveTemps
// removes.
func (d *S3) Create(name string) (Writer, error) {
	pr, pw := io.Pipe()
	w := &s3Writer{d: d, name: name, pw: pw, h: sha256.New(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(d.ctx)
	w.cancel = cancel
	go func() {
		info, err := d.c.PutObject(ctx, d.bucket, d.key(name), pr, -1, minio.PutObjectOptions{
			PartSize: partSize, NumThreads: partThreads, SendContentMd5: true, ContentType: "application/octet-stream"})
		pr.CloseWithError(err) // unblocks a writer when the upload fails first
		if err == nil {
			w.uploaded = info.Size
		}
		w.done <- err
	}()
	return w, nil
}

type s3Writer struct {
	d        *S3
	name     string
	pw       *io.PipeWriter
	h        hash.Hash
	n        int64
	uploaded int64
	done     chan error
	cancel   func()
}

func (w *s3Writer) Name() string { return w.name }

func (w *s3Writer) Write(p []byte) (int, error) {
	n, err := w.pw.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, w.d.wrap(w.name, err)
	}
	return n, nil
}

func (w *s3Writer) Commit() (int64, string, error) {
	w.pw.Close()
	err := <-w.done
	w.cancel()
	if err != nil {
		return 0, "", w.d.wrap(w.name, err)
	}
	st, err := w.d.Stat(w.name)
	if err != nil {
		return 0, "", err
	}
	if st.Size != w.n || w.uploaded != w.n {
		return 0, "", fmt.Errorf("%s: uploaded %d bytes, the object holds %d", w.d.Join(w.name), w.n, st.Size)
	}
	return w.n, hex.EncodeToString(w.h.Sum(nil)), nil
}

func (w *s3Writer) Abort() {
	w.cancel()
	w.pw.CloseWithError(context.Canceled)
	<-w.done
	// PutObject aborts its multipart upload on failure; a partial object
	// never appears
}

func (d *S3) Remove(name string) error {
	if err := d.c.RemoveObject(d.ctx, d.bucket, d.key(name), minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return d.wrap(name, err)
	}
	return nil
}

// Make creates nothing (a prefix exists once an object is under it); it
// checks that the bucket is there, and reports the prefix empty as
// created.
func (d *S3) Make() (bool, error) {
	_, err := d.List()
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func (d *S3) RemoveDir() {}

// Sync: an object is durable once its PUT (or its multipart upload's
// completion) has returned.
func (d *S3) Sync() error { return nil }

// RemoveTemps aborts the multipart uploads a killed writer left under
// the prefix (their parts are invisible but stored, and billed).
func (d *S3) RemoveTemps() {
	for u := range d.c.ListIncompleteUploads(d.ctx, d.bucket, d.prefix, true) {
		if u.Err != nil {
			return
		}
		d.c.RemoveIncompleteUpload(d.ctx, d.bucket, u.Key)
	}
}

// lease is the lock object's contents.
type lease struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Expires time.Time `json:"expires"`
}

// Lock takes the directory's lease: the object .lock, created only if
// absent (a conditional PUT, If-None-Match: *), renewed every LeaseTTL/4
// while the writer runs and removed by unlock. A lease whose expiry has
// passed (its writer was killed) is taken over. Limits
// (docs/ARCHITECTURE.md): it needs a server that honours conditional
// writes (AWS S3 and MinIO do); the clocks of the writers' machines must
// agree to well within LeaseTTL; a writer stalled past LeaseTTL without
// renewing can be overtaken.
func (d *S3) Lock(what string) (func(), error) {
	const name = ".lock"
	host, _ := os.Hostname()
	// put writes the lease: only if there is none (ifNone), only over the
	// version etag (a takeover), or unconditionally (a renewal).
	put := func(ifNone bool, etag string) error {
		b, _ := json.Marshal(lease{Host: host, PID: os.Getpid(), Expires: time.Now().Add(LeaseTTL).UTC()})
		opts := minio.PutObjectOptions{ContentType: "application/json"}
		if ifNone {
			opts.SetMatchETagExcept("*")
		} else if etag != "" {
			opts.SetMatchETag(etag)
		}
		_, err := d.c.PutObject(d.ctx, d.bucket, d.key(name), bytes.NewReader(b), int64(len(b)), opts)
		return err
	}
	lost := func(err error) bool {
		r := minio.ToErrorResponse(err)
		return r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed"
	}
	busy := func(l *lease) error {
		held := ""
		if l != nil {
			held = fmt.Sprintf(" held by %s pid %d until %s", l.Host, l.PID, l.Expires.Format(time.RFC3339))
		}
		return fmt.Errorf("%s: %s is being written by another process (lease %s%s)", what, d, d.Join(name), held)
	}
	if err := put(true, ""); lost(err) {
		// a lease is there: taken over only when it has expired (its
		// writer was killed), and only if it is still that version
		st, serr := d.c.StatObject(d.ctx, d.bucket, d.key(name), minio.StatObjectOptions{})
		b, rerr := d.ReadFile(name)
		var l lease
		if serr != nil || rerr != nil || json.Unmarshal(b, &l) != nil {
			return nil, busy(nil)
		}
		if time.Now().Before(l.Expires) {
			return nil, busy(&l)
		}
		if err := put(false, st.ETag); lost(err) {
			return nil, busy(nil)
		} else if err != nil {
			return nil, fmt.Errorf("%s: lock: %w", what, d.wrap(name, err))
		}
	} else if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", what, d.wrap(name, err))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(LeaseTTL / 4)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				put(false, "") // renew; a failed renewal is retried at the next tick
			case <-stop:
				return
			case <-d.ctx.Done():
				return
			}
		}
	})
	return func() {
		close(stop)
		wg.Wait()
		// the lease goes even when the run was cancelled
		ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 30*time.Second)
		defer cancel()
		d.c.RemoveObject(ctx, d.bucket, d.key(name), minio.RemoveObjectOptions{})
	}, nil
}

// Base is the last element of the prefix, for a local cache's name.
func (d *S3) Base() string { return path.Base(strings.TrimSuffix(d.prefix, "/")) }

// Bucket and Prefix of the Dir.
func (d *S3) Bucket() string { return d.bucket }
func (d *S3) Prefix() string { return d.prefix }
