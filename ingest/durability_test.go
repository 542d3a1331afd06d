package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/estkit/estkit/ingest/corpusgen"
)

// mixedCorpus writes several formats under one root, enough for a few
// shards at small --shard-bytes.
func mixedCorpus(t *testing.T, scale int) string {
	t.Helper()
	texts := corpusgen.Repeat(goTexts(t, 200), int64(scale)<<20)
	root := filepath.Join(t.TempDir(), "corpus")
	n := len(texts)
	if _, err := corpusgen.WriteOWT(root, texts[:n/4], 40, false); err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.WriteSlimPajama(filepath.Join(root, "slim", "example_train_0.jsonl.zst"), texts[n/4:n/2]); err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.WriteSlimPajama(filepath.Join(root, "slim", "example_train_1.jsonl.zst"), texts[n/2:n*5/8]); err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.WriteStarCoder(filepath.Join(root, "starcoder", "go", "train-00000-of-00001.parquet"), corpusgen.StarCoderRows(texts[n*5/8:n*3/4]), 32); err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.WriteJSONL(filepath.Join(root, "misc", "x.jsonl.gz"), "text", texts[n*3/4:]); err != nil {
		t.Fatal(err)
	}
	return root
}

// dirState maps each file of a shard directory to its bytes, with the
// manifest's timing section and checksum removed.
func dirState(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if e.Name() == ".lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == ManifestName {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "timing")
			delete(m, "checksum") // covers timing
			b, _ = json.Marshal(m)
		}
		out[e.Name()] = b
	}
	return out
}

func sameState(t *testing.T, a, b map[string][]byte, what string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d files vs %d", what, len(a), len(b))
	}
	for name, x := range a {
		if !bytes.Equal(x, b[name]) {
			t.Fatalf("%s: %s differs", what, name)
		}
	}
}

func TestDeterministicAcrossWorkers(t *testing.T) {
	root := mixedCorpus(t, 6)
	var ref map[string][]byte
	for _, w := range []int{1, 2, 5} {
		m, dir := mustIngest(t, []string{root}, Options{Workers: w, ShardBytes: 512 << 10})
		if len(m.Outputs) < 4 {
			t.Fatalf("want several shards, got %d", len(m.Outputs))
		}
		st := dirState(t, dir)
		if ref == nil {
			ref = st
			continue
		}
		sameState(t, ref, st, fmt.Sprintf("workers 1 vs %d", w))
	}
}

func TestReuseAndStaleOutput(t *testing.T) {
	root := mixedCorpus(t, 1)
	out := filepath.Join(t.TempDir(), "out")
	o := Options{OutDir: out, ShardBytes: 256 << 10}
	res, _, err := ingestDir(t, []string{root}, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate {
		t.Fatal("first run reported up to date")
	}
	first := dirState(t, out)

	res, _, err = ingestDir(t, []string{root}, o)
	if err != nil || !res.UpToDate {
		t.Fatalf("second run: err %v, up to date %v", err, res != nil && res.UpToDate)
	}
	sameState(t, first, dirState(t, out), "after a no-op run")

	// Another option: new key, new shards, the old ones gone.
	o2 := o
	o2.Dedup = true
	res, _, err = ingestDir(t, []string{root}, o2)
	if err != nil || res.UpToDate {
		t.Fatal(err)
	}
	for name := range dirState(t, out) {
		if _, old := first[name]; old && name != ManifestName {
			t.Fatalf("stale shard %s left beside fresh output", name)
		}
	}

	// Changed input bytes (same size): redone.
	p := filepath.Join(root, "misc", "x.jsonl.gz")
	b := corpusgen.Gzip([]byte("{\"text\": \"replaced\"}\n"))
	write(t, p, b)
	res, _, err = ingestDir(t, []string{root}, o2)
	if err != nil || res.UpToDate {
		t.Fatal("changed input not re-ingested", err)
	}

	// A missing shard: redone.
	os.Remove(filepath.Join(out, res.Manifest.Outputs[0].Name))
	res, _, err = ingestDir(t, []string{root}, o2)
	if err != nil || res.UpToDate {
		t.Fatal("missing shard not rebuilt", err)
	}
	// --force redoes.
	o2.Force = true
	if res, _, err = ingestDir(t, []string{root}, o2); err != nil || res.UpToDate {
		t.Fatal("force ignored", err)
	}
}

// TestHelperIngestProcess is the child of TestKilledRun.
func TestHelperIngestProcess(t *testing.T) {
	spec := os.Getenv("ESTKIT_INGEST_CHILD")
	if spec == "" {
		t.Skip("child process of TestKilledRun")
	}
	parts := strings.SplitN(spec, "|", 3)
	_, err := Run(context.Background(), []string{parts[1]}, Options{OutDir: parts[0], ShardBytes: 256 << 10, Workers: 2, Force: parts[2] == "force"})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKilledRun kills an ingest with SIGKILL at several moments and checks
// that no half-written shard or manifest is ever visible, and that running
// again completes the job with the output of an uninterrupted run.
func TestKilledRun(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	root := mixedCorpus(t, 8)
	ref := filepath.Join(t.TempDir(), "ref")
	start := time.Now()
	mustIngest(t, []string{root}, Options{OutDir: ref, ShardBytes: 256 << 10, Workers: 2})
	full := time.Since(start)
	want := dirState(t, ref)

	out := filepath.Join(t.TempDir(), "out")
	// An earlier committed output of other options must survive intact.
	mustIngest(t, []string{root}, Options{OutDir: out, ShardBytes: 1 << 20, Workers: 2})
	for i, frac := range []float64{0.05, 0.2, 0.4, 0.6, 0.8, 0.95} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperIngestProcess$")
		// Kills 0-2 interrupt a run of new options over an older committed
		// output; kills 3-5 a same-key rebuild (--force) over this output.
		mode := "new"
		if i > 2 {
			mode = "force"
		}
		cmd.Env = append(os.Environ(), "ESTKIT_INGEST_CHILD="+out+"|"+root+"|"+mode)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(frac * float64(full+150*time.Millisecond)))
		cmd.Process.Kill()
		cmd.Wait()
		checkVisibleComplete(t, out)
		if i == 2 {
			// Re-running completes the job.
			if _, _, err := ingestDir(t, []string{root}, Options{OutDir: out, ShardBytes: 256 << 10, Workers: 2}); err != nil {
				t.Fatal(err)
			}
			sameState(t, want, dirState(t, out), "rerun after kill")
		}
	}
	if _, _, err := ingestDir(t, []string{root}, Options{OutDir: out, ShardBytes: 256 << 10, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	sameState(t, want, dirState(t, out), "final rerun after kills")
}

// checkVisibleComplete: the manifest, if any, is valid and every shard it
// names is intact; every visible shard (not .tmp-) is a complete Arrow file.
func checkVisibleComplete(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); err == nil {
		if _, err := ReadManifest(dir); err != nil {
			t.Fatalf("visible manifest unreadable: %v", err)
		}
		allDocs(t, dir) // checks sizes and sha256 of every named shard
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "docs-") {
			err := ScanShard(filepath.Join(dir, e.Name()), func(arrow.RecordBatch) (bool, error) { return true, nil })
			if err != nil {
				t.Fatalf("visible shard %s is incomplete: %v", e.Name(), err)
			}
		}
	}
}
