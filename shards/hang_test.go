package shards

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestHangHunt(t *testing.T) {
	docs := docSet(t, "go", 17, 64<<10)
	res := build(t, []string{docs}, Options{})
	name := res.Manifest.Splits[Train].Files[0].Name
	orig, _ := os.ReadFile(filepath.Join(res.Dir, name))
	r := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 3000; it++ {
		data := append([]byte(nil), orig...)
		switch r.IntN(3) {
		case 0:
			data = data[:1+r.IntN(len(data)-1)]
		case 1:
			i := r.IntN(len(data))
			j := i + r.IntN(len(data)-i)
			data = append(data[:i:i], append(append([]byte(nil), data[j:]...), data[i:]...)...)
		default:
			for k := 0; k < 1+r.IntN(8); k++ {
				data[r.IntN(len(data))] = byte(r.IntN(256))
			}
		}
		dir := t.TempDir()
		m := *res.Manifest
		f := res.Manifest.Splits[Train].Files[0]
		f.Size = int64(len(data))
		m.Splits = map[string]*Split{Train: {Files: []File{f}, Documents: f.Documents, Tokens: f.Tokens}}
		writeManifest(dir, &m)
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
		done := make(chan struct{})
		go func() {
			defer func() { recover(); close(done) }()
			s, err := Open(dir, false)
			if err == nil {
				defer s.Close()
				st, err := s.Stream(Train)
				if err == nil {
					buf := make([]int32, min(st.Tokens, 1000))
					st.Read(buf, 0)
					st.Spans(0, int64(len(buf)))
					st.Documents(func([]int32) error { return nil })
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			os.WriteFile("/tmp/hangstack.txt", buf[:n], 0o644)
			t.Fatalf("hang at iteration %d", it)
		}
	}
}
