package store_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// TestS3Dir: the object storage Dir against a real server: commit makes a
// file appear whole (a multipart upload for one larger than a part), an
// aborted one never appears, reads at offsets, the lease keeps a second
// writer out, and misconfigurations are errors naming the URL.
func TestS3Dir(t *testing.T) {
	srv := s3test.Start(t)
	url := srv.Bucket(t, "sets", "a/b")
	ctx := context.Background()
	d, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty prefix: %v, want fs.ErrNotExist", err)
	}
	big := make([]byte, 40<<20+123) // three parts
	for i := range big {
		big[i] = byte(i * 7 >> 3)
	}
	w, err := d.Create("x.arrow")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	if names, _ := d.List(); len(names) != 0 {
		t.Fatalf("visible before commit: %v", names)
	}
	n, sum, err := w.Commit()
	if err != nil || n != int64(len(big)) || len(sum) != 64 {
		t.Fatalf("commit: %d %q %v", n, sum, err)
	}
	a, _ := d.Create("aborted.arrow")
	a.Write(big[:1<<20])
	a.Abort()
	if names, _ := d.List(); strings.Join(names, " ") != "x.arrow" {
		t.Fatalf("after an abort: %v", names)
	}
	f, err := d.Open("x.arrow")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := f.ReadAt(buf, 30<<20); err != nil || string(buf) != string(big[30<<20:30<<20+1000]) {
		t.Fatalf("read at an offset: %v", err)
	}
	rest, _ := io.ReadAll(f)
	f.Close()
	if len(rest) != len(big) {
		t.Fatalf("read %d bytes, want %d", len(rest), len(big))
	}
	if _, err := d.Stat("missing"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), url+"/missing") {
		t.Fatalf("missing object: %v", err)
	}

	unlock, err := d.Lock("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock("test"); err == nil || !strings.Contains(err.Error(), "being written by another process") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := d.Lock("test")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()

	// misconfigurations
	nb, _ := store.Open(ctx, "s3://no-such-bucket/p")
	if _, err := nb.List(); !errors.Is(err, store.ErrNoBucket) || !strings.Contains(err.Error(), "s3://no-such-bucket/p") {
		t.Fatalf("missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	bad, _ := store.Open(ctx, url)
	if _, err := bad.List(); !errors.Is(err, store.ErrDenied) || !strings.Contains(err.Error(), url) {
		t.Fatalf("bad credentials: %v", err)
	}
	t.Setenv(store.EnvEndpoint, "http://127.0.0.1:1")
	off, _ := store.Open(ctx, url)
	if _, err := off.List(); err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "cannot reach endpoint 127.0.0.1:1") {
		t.Fatalf("wrong endpoint: %v", err)
	}
}
