package train

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// TestMetricsRecordDataWait: every line of metrics.jsonl says how long its
// step waited for the loader's batches (data_wait_ms), a part of the
// step's time.
func TestMetricsRecordDataWait(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), tinyRun(tokenSet(t)), out, Options{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		wait, ok := r["data_wait_ms"].(float64)
		if ms := r["ms"].(float64); !ok || wait < 0 || wait > ms {
			t.Fatalf("step %v: data_wait_ms %v of a %v ms step: %s", r["step"], r["data_wait_ms"], ms, sc.Bytes())
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d records", n)
	}
}
