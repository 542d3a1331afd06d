package shards

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// TestKilledUploadResumes: a shard run into a bucket, killed (SIGKILL, in
// a child process) halfway through its uploads, leaves a set readers
// refuse; a re-run completes it, reusing the files the killed run had
// uploaded (not uploading them again), and the set is the one a run on
// the local disk makes.
func TestKilledUploadResumes(t *testing.T) {
	if os.Getenv("ESTKIT_TEST_KILLED_CHILD") != "" {
		killedChild(t)
		return
	}
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "tok", "")
	docs := docSet(t, "go", 7, 192<<10)
	o := Options{ShardTokens: 5000}
	here := build(t, []string{docs}, o)
	url := bucket + "killed"

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledUploadResumes$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ESTKIT_TEST_KILLED_CHILD=1", "ESTKIT_TEST_DOCS="+docs, "ESTKIT_TEST_OUT="+url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "blocked" {
			ready = true
			break
		}
	}
	cmd.Process.Kill() // the child this test started
	cmd.Wait()
	if !ready {
		t.Fatal("the child run never reached the middle of its uploads")
	}

	d, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := d.List()
	var journal int
	for _, n := range names {
		if strings.HasPrefix(n, setdir.JournalPrefix) {
			journal++
		}
	}
	if slices.Contains(names, ManifestName) || journal < 2 {
		t.Fatalf("the killed run left %v: want files and their journal records, no manifest", names)
	}
	// the killed writer's lease (short in the child) runs out: a re-run
	// takes it over after its expiry, as it would after LeaseTTL
	var lease struct{ Expires time.Time }
	if b, err := d.ReadFile(".lock"); err != nil || json.Unmarshal(b, &lease) != nil {
		t.Fatalf("the killed run's lease: %v", err)
	}
	time.Sleep(time.Until(lease.Expires) + 10*time.Millisecond)
	t.Setenv(store.EnvCache, t.TempDir())
	if _, err := Open(url, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a killed run's set: %v, want it refused (no manifest)", err)
	}
	again := build(t, []string{docs}, Options{ShardTokens: 5000, OutDir: url})
	if again.Manifest.Timing.ReusedFiles != journal {
		t.Fatalf("the re-run reused %d files, the killed run had committed %d", again.Manifest.Timing.ReusedFiles, journal)
	}
	if again.Manifest.Key != here.Manifest.Key || !slices.Equal(fileSums(again.Manifest), fileSums(here.Manifest)) {
		t.Fatal("the completed set differs from the local one")
	}
	if batches(t, url) != batches(t, here.Dir) {
		t.Fatal("the completed set's batches differ from the local set's")
	}
}

// killedChild builds into the bucket and blocks, forever, once about half
// the documents are written, saying so on stdout: the parent kills it
// there.
func killedChild(t *testing.T) {
	docs, url := os.Getenv("ESTKIT_TEST_DOCS"), os.Getenv("ESTKIT_TEST_OUT")
	dm, err := ingest.ReadManifest(docs)
	if err != nil {
		t.Fatal(err)
	}
	m := dm.Counts.Documents
	store.LeaseTTL = 200 * time.Millisecond // the parent waits for it to run out
	o := Options{ShardTokens: 5000, OutDir: url, ValFraction: 0.05, Workers: 1}
	o.Progress = func(n, _ int64) {
		if n >= m/2 {
			fmt.Println("blocked")
			select {}
		}
	}
	Build(context.Background(), gpt2(t), []string{docs}, o)
	t.Fatal("the build finished before it was killed")
}
