package store

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// EnvCacheBytes bounds the bytes a Cache keeps on the local disk (a
// number of bytes, or with a suffix K, M, G or T: KiB … TiB).
const EnvCacheBytes = "ESTKIT_S3_CACHE_BYTES"

// DefaultCacheBytes is the bound when EnvCacheBytes is unset.
const DefaultCacheBytes = 8 << 30

// CacheBytes reads EnvCacheBytes; a value that does not parse is an
// error naming the variable.
func CacheBytes() (int64, error) {
	v := strings.TrimSpace(os.Getenv(EnvCacheBytes))
	if v == "" {
		return DefaultCacheBytes, nil
	}
	n, err := ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", EnvCacheBytes, v, err)
	}
	return n, nil
}

// ParseBytes reads a positive size: digits, optionally followed by K, M,
// G or T (powers of 1024; a trailing "iB" or "B" is allowed).
func ParseBytes(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	shift := 0
	if s != "" {
		if i := strings.IndexByte("KMGT", s[len(s)-1]); i >= 0 {
			shift = 10 * (i + 1)
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("not a positive size (bytes, or a number with K, M, G or T)")
	}
	return n << shift, nil
}

// Cache keeps local copies of the files of a set in object storage, in a
// directory, within a bound on their total size: the least recently used
// file not in use goes when a new one needs room. Each copy is named by
// its sha256 and checked against it as it downloads (and, for a copy an
// earlier process left, once before its first use); a download that fails
// on a transient error (the server unreachable or overloaded, a
// connection cut) is retried with exponential backoff. Files in use
// (between Get and its release, or downloading) are never removed, so the
// bound can be exceeded by what is in use at once.
//
// The directory may be shared by processes (ranks of one run): copies are
// committed by rename, and a removed copy stays readable where it is
// mapped; each process keeps its own bound.
type Cache struct {
	src     Dir
	dir     string
	max     int64
	corrupt error // wrapped by a checksum mismatch

	// Attempts is how many times a download is tried (default 8);
	// Backoff the wait before the second, doubled for each next up to
	// MaxBackoff (defaults 250ms and 8s).
	Attempts            int
	Backoff, MaxBackoff time.Duration
	// OnRetry, if set, hears each failed attempt that will be retried
	// (tests restart the server there).
	OnRetry func(name string, attempt int, err error)

	mu      sync.Mutex
	entries map[string]*entry // by sha256
	lru     *list.List        // of *entry, least recently used first; only entries not in use
	used    int64             // bytes of ready entries and of downloads under way
	fetched int               // downloads completed
	sem     chan struct{}     // bounds concurrent downloads
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

type entry struct {
	sum      string
	name     string
	size     int64
	pins     int           // Gets not yet released, and the download itself
	ready    chan struct{} // closed when the download ends
	err      error         // the download's, once ready
	verified bool          // the copy was checked against sum by this process
	elem     *list.Element // in lru while pins == 0
}

// NewCache returns a Cache of the files of src in the local directory dir
// (created), keeping at most max bytes; copies an earlier process left
// there are adopted (and checked before use). corrupt is the error a
// checksum mismatch wraps.
func NewCache(src Dir, dir string, max int64, corrupt error) (*Cache, error) {
	if max <= 0 {
		return nil, fmt.Errorf("cache %s: bound of %d bytes", dir, max)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Cache{src: src, dir: dir, max: max, corrupt: corrupt, Attempts: 8, Backoff: 250 * time.Millisecond, MaxBackoff: 8 * time.Second,
		entries: map[string]*entry{}, lru: list.New(), sem: make(chan struct{}, 4), ctx: ctx, stop: stop}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	type old struct {
		sum   string
		size  int64
		mtime time.Time
	}
	var olds []old
	for _, de := range des {
		n := de.Name()
		if len(n) != 64 || strings.Trim(n, "0123456789abcdef") != "" || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		olds = append(olds, old{n, info.Size(), info.ModTime()})
	}
	// oldest first into the LRU, so that they go first
	for len(olds) > 0 {
		k := 0
		for i := range olds {
			if olds[i].mtime.Before(olds[k].mtime) {
				k = i
			}
		}
		o := olds[k]
		olds = append(olds[:k], olds[k+1:]...)
		e := &entry{sum: o.sum, size: o.size, ready: make(chan struct{})}
		close(e.ready)
		e.elem = c.lru.PushBack(e)
		c.entries[o.sum] = e
		c.used += o.size
	}
	c.mu.Lock()
	c.evict(0)
	c.mu.Unlock()
	return c, nil
}

// Max is the bound on the copies' bytes.
func (c *Cache) Max() int64 { return c.max }

// Dir is the local directory of the copies.
func (c *Cache) Dir() string { return c.dir }

// Close stops the downloads under way and waits for them; copies stay.
func (c *Cache) Close() {
	c.stop()
	c.wg.Wait()
}

// Wait waits for the downloads under way (and those they start) to end.
func (c *Cache) Wait() { c.wg.Wait() }

// Path is where the copy of the file of that sha256 lies.
func (c *Cache) Path(sum string) string { return filepath.Join(c.dir, sum) }

// evict removes least recently used copies not in use until need more
// bytes fit in the bound. Called with mu held.
func (c *Cache) evict(need int64) {
	for c.used+need > c.max {
		front := c.lru.Front()
		if front == nil {
			return // everything left is in use
		}
		e := front.Value.(*entry)
		c.lru.Remove(front)
		delete(c.entries, e.sum)
		c.used -= e.size
		os.Remove(c.Path(e.sum)) // a copy of ours, named by its sum; mapped readers keep their pages
	}
}

// pin marks e in use. Called with mu held.
func (c *Cache) pin(e *entry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	e.pins++
}

// unpin releases a use of e: unused, it becomes the most recently used
// copy (a failed download is forgotten instead).
func (c *Cache) unpin(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.pins--
	if e.pins > 0 {
		return
	}
	if e.err != nil {
		if c.entries[e.sum] == e {
			delete(c.entries, e.sum)
		}
		return
	}
	e.elem = c.lru.PushBack(e)
	c.evict(0)
}

// start returns the entry of the file, pinned, starting its download when
// it is not there.
func (c *Cache) start(name string, size int64, sum string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[sum]; e != nil && e.size == size {
		c.pin(e)
		return e
	} else if e != nil && e.pins == 0 {
		// an adopted copy of another size: not this file
		c.lru.Remove(e.elem)
		delete(c.entries, sum)
		c.used -= e.size
	}
	e := &entry{sum: sum, name: name, size: size, ready: make(chan struct{}), verified: true}
	c.evict(size)
	c.entries[sum] = e
	c.used += size
	c.pin(e) // the download's own use
	c.wg.Go(func() {
		err := c.download(name, size, sum)
		c.mu.Lock()
		e.err = err // under mu: unpin reads it there, while the download may still run
		if e.err != nil {
			c.used -= size
		} else {
			c.fetched++
		}
		c.mu.Unlock()
		close(e.ready)
		c.unpin(e)
	})
	return e
}

// Get returns the path of the verified local copy of the file name (size
// bytes of that sha256), downloading it if needed, and the function that
// releases it; until then the copy stays.
func (c *Cache) Get(ctx context.Context, name string, size int64, sum string) (string, func(), error) {
	e := c.start(name, size, sum)
	select {
	case <-e.ready:
	case <-ctx.Done():
		c.unpin(e)
		return "", nil, ctx.Err()
	}
	if e.err != nil {
		c.unpin(e)
		return "", nil, e.err
	}
	if !e.verified {
		// adopted from an earlier process: checked once before use
		c.mu.Lock()
		err := c.check(e)
		c.mu.Unlock()
		if err != nil {
			c.unpin(e)
			return c.Get(ctx, name, size, sum) // the bad copy is gone: download
		}
	}
	var once sync.Once
	return c.Path(sum), func() { once.Do(func() { c.unpin(e) }) }, nil
}

// check verifies an adopted copy (mu held); a bad one is removed and
// forgotten.
func (c *Cache) check(e *entry) error {
	if e.verified {
		return nil
	}
	n, sum, err := hashFile(c.Path(e.sum))
	if err == nil && n == e.size && sum == e.sum {
		e.verified = true
		return nil
	}
	if c.entries[e.sum] == e {
		delete(c.entries, e.sum)
		c.used -= e.size
	}
	os.Remove(c.Path(e.sum))
	e.err = fmt.Errorf("cache: %s: a bad copy", c.Path(e.sum))
	return e.err
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// Prefetch starts downloading the file if it is not there and returns at
// once; the copy is then the most recently used, not in use.
func (c *Cache) Prefetch(name string, size int64, sum string) {
	e := c.start(name, size, sum)
	c.unpin(e)
}

// Has reports whether the file's copy is there or downloading.
func (c *Cache) Has(sum string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[sum] != nil
}

// Downloads is the number of files downloaded so far (a file evicted
// and needed again counts again).
func (c *Cache) Downloads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetched
}

// Used is the bytes of the copies kept and downloading.
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// download fetches the file into its copy, retrying transient errors and
// a checksum mismatch (a transfer damaged on the way) with backoff.
func (c *Cache) download(name string, size int64, sum string) error {
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	defer func() { <-c.sem }()
	wait := c.Backoff
	for attempt := 1; ; attempt++ {
		err := c.fetchOnce(name, size, sum)
		if err == nil {
			return nil
		}
		if attempt >= c.Attempts || !(Transient(err) || errors.Is(err, c.corrupt)) || c.ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		if c.OnRetry != nil {
			c.OnRetry(name, attempt, err)
		}
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		wait = min(2*wait, c.MaxBackoff)
	}
}

func (c *Cache) fetchOnce(name string, size int64, sum string) error {
	f, err := c.src.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	// a temporary of its own (processes may share the directory), renamed
	// into place once it verifies
	tmp, err := os.CreateTemp(c.dir, ".download-*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), f)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: download: %w", c.src.Join(name), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != sum {
		return fmt.Errorf("%s: %w: downloaded %d bytes of sha256 %s, the manifest records %d bytes of %s", c.src.Join(name), c.corrupt, n, got, size, sum)
	}
	if err := os.Rename(tmp.Name(), c.Path(sum)); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// Transient reports whether err is one that trying again may cure: the
// server unreachable, a connection cut, a timeout, or the server's
// 5xx, SlowDown and RequestTimeout; not a missing object or bucket,
// refused credentials or cancellation.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, fs.ErrNotExist),
		errors.Is(err, ErrNoBucket), errors.Is(err, ErrDenied):
		return false
	}
	var r minio.ErrorResponse
	if errors.As(err, &r) && (r.StatusCode != 0 || r.Code != "") {
		switch r.Code {
		case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "XMinioServerNotInitialized":
			return true
		}
		return r.StatusCode >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded)
}
