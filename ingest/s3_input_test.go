package ingest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/minio/minio-go/v7"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// uploadTree copies every file under root into the bucket at prefix,
// named by its path relative to root.
func uploadTree(t *testing.T, srv *s3test.Server, bucket, prefix, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		_, err = srv.Client.FPutObject(context.Background(), bucket, prefix+filepath.ToSlash(rel), p, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outputSums lists a set's shard files with their sha256.
func outputSums(m *Manifest) []string {
	var s []string
	for _, f := range m.Outputs {
		s = append(s, f.Name+" "+f.SHA256)
	}
	return s
}

// TestIngestFromObjectStorage: raw corpora in a bucket (owt tars,
// SlimPajama jsonl.zst, StarCoder parquet, jsonl.gz, Arrow, text, beside a
// hidden file and a README) ingest, format recognised per file, into the
// same set (key, inputs, shard files) as a local copy of the same files;
// a single object at a URL too; a missing prefix, object or bucket is an
// error naming the URL.
func TestIngestFromObjectStorage(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "raw", "")
	t.Setenv(store.EnvCache, t.TempDir())

	root := mixedCorpus(t, 1)
	write(t, filepath.Join(root, "arrow", "cache-0001.arrow"), arrowFixture(t, true, arrow.BinaryTypes.String, [][]*string{strs("first arrow document", "second")}))
	write(t, filepath.Join(root, "text", "a.txt"), []byte("one plain text document\n"))
	write(t, filepath.Join(root, ".git", "config"), []byte("[core]\n"))
	write(t, filepath.Join(root, "README.md"), []byte("# a corpus\n"))
	uploadTree(t, srv, "raw", "corpora/mixed/", root)

	o := Options{ShardBytes: 256 << 10}
	lm, _ := mustIngest(t, []string{root}, o)
	url := bucket + "corpora/mixed"
	rm, _ := mustIngest(t, []string{url}, o)
	if rm.Key != lm.Key || !slices.Equal(outputSums(rm), outputSums(lm)) {
		t.Fatalf("the set ingested from the bucket differs from the local one:\n%v\n%v", outputSums(rm), outputSums(lm))
	}
	if !slices.Equal(rm.Inputs, lm.Inputs) || !slices.Equal(rm.Ignored, lm.Ignored) {
		t.Fatalf("inputs or ignored differ:\n%+v\n%+v\n%+v\n%+v", rm.Inputs, lm.Inputs, rm.Ignored, lm.Ignored)
	}
	if len(lm.Inputs) < 7 {
		t.Fatalf("only %d inputs: %+v", len(lm.Inputs), lm.Inputs)
	}

	// one object, named by its URL, and the same file given locally
	one := filepath.Join(root, "slim", "example_train_1.jsonl.zst")
	lm1, _ := mustIngest(t, []string{one}, o)
	rm1, _ := mustIngest(t, []string{url + "/slim/example_train_1.jsonl.zst"}, o)
	if rm1.Key != lm1.Key || !slices.Equal(outputSums(rm1), outputSums(lm1)) || rm1.Inputs[0].Path != "example_train_1.jsonl.zst" {
		t.Fatalf("a single object: %+v, want %+v", rm1.Inputs, lm1.Inputs)
	}

	// a part of the inputs, from the bucket and locally
	p := o
	p.Format = FormatJSONL
	p.Part = setdir.Part{Index: 1, Of: 2}
	lp, _ := mustIngest(t, []string{root}, p)
	rp, _ := mustIngest(t, []string{url}, p)
	if rp.Key != lp.Key || !slices.Equal(outputSums(rp), outputSums(lp)) {
		t.Fatal("a part ingested from the bucket differs from the local one")
	}

	for _, bad := range []string{bucket + "corpora/none", url + "/slim/missing.jsonl.zst", "s3://no-such-bucket/x"} {
		_, _, err := ingestDir(t, []string{bad}, o)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(bad, "/x")) {
			t.Fatalf("ingest %s: %v, want an error naming it", bad, err)
		}
		if !strings.Contains(bad, "no-such-bucket") && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ingest %s: %v, want fs.ErrNotExist", bad, err)
		}
		if strings.Contains(bad, "no-such-bucket") && !errors.Is(err, store.ErrNoBucket) {
			t.Fatalf("ingest %s: %v, want store.ErrNoBucket", bad, err)
		}
	}
	// the temporary copies of the inputs are gone
	if ents, _ := os.ReadDir(filepath.Join(os.Getenv(store.EnvCache), inputsCacheDir)); len(ents) != 0 {
		t.Fatalf("downloads left behind: %v", ents)
	}
}
