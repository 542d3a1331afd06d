package ingest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/internal/testwait"
)

func jsonlOf(texts []corpusgen.Text) []byte {
	var b strings.Builder
	for _, x := range texts {
		fmt.Fprintf(&b, "{\"text\": %q}\n", x.Body)
	}
	return []byte(b.String())
}

// TestMalformed feeds each kind of bad input, with good files around it, and
// checks the error under --on-error fail (file, position, sentinel) and the
// counts under --on-error skip (nothing lost without being counted).
func TestMalformed(t *testing.T) {
	texts := goTexts(t, 12)
	short := []corpusgen.Text{{Body: "alpha"}, {Body: "beta\n"}, {Body: "gamma \"delta\""}, {Body: "épsilon"}}
	good := jsonlOf(short)
	zst := corpusgen.Zstd(jsonlOf(texts))
	owtInner := corpusgen.OWTInner(texts, 0)
	tarGood := corpusgen.Tar([]corpusgen.Member{{Name: "a.txt", Body: []byte(texts[0].Body)}, {Name: "b.txt", Body: []byte(texts[1].Body)}, {Name: "c.txt", Body: []byte(texts[2].Body)}})
	// Damage the second member's header checksum.
	tarBad := append([]byte{}, tarGood...)
	second := 512 + (len(texts[0].Body)+511)/512*512
	for ; tarBad[second+156] != '0'; second += 512 { // skip PAX headers: find the regular-file header
	}
	copy(tarBad[second+148:], "9999999\x00")
	cases := []struct {
		name    string
		file    string
		data    []byte
		opts    Options
		err     error
		pos     string // substring of the error's position
		kept    int64  // documents kept under skip
		reason  string
		rejects int64
	}{
		{"truncated-zst", "t.jsonl.zst", zst[:len(zst)*2/3], Options{}, ErrCorrupt, "line ", -1, ReasonCorrupt, 1},
		{"truncated-gz", "t.jsonl.gz", corpusgen.Gzip(jsonlOf(texts))[:200], Options{}, ErrCorrupt, "line ", -1, ReasonCorrupt, 1},
		{"zst-garbage", "g.jsonl.zst", []byte("this is not zstd at all"), Options{Format: FormatJSONL}, ErrCorrupt, "", 0, ReasonCorrupt, 1},
		{"truncated-xz", "urlsf_subset00-1_data.xz", owtInner[:len(owtInner)/2], Options{}, ErrCorrupt, "", -1, ReasonCorrupt, 1},
		{"xz-garbage", "urlsf_subset00-2_data.xz", append(append([]byte{}, magicXZ...), []byte("garbage garbage garbage garbage")...), Options{}, ErrCorrupt, "", 0, ReasonCorrupt, 1},
		{"corrupt-tar", "docs.tar", tarBad, Options{Format: FormatOWT}, ErrCorrupt, "after member a.txt", 1, ReasonCorrupt, 1},
		{"invalid-json", "bad.jsonl", lines(good[:len(good)-1], []byte(`{"text": "unterminated`), jsonlOf(short[:2])), Options{}, ErrInvalidJSON, "line 5", 6, ReasonInvalidJSON, 1},
		{"missing-field", "nofield.jsonl", lines(good[:len(good)-1], []byte(`{"body": "x"}`), []byte(`{"text": 7}`), []byte(`{"text": null}`)), Options{}, ErrMissingField, "line 5", 4, ReasonMissingField, 3},
		{"slimpajama-missing-text", "example_train_0.jsonl", lines(corpusgen.SlimPajamaLine("a", "RedPajamaC4"), []byte(`{"meta": {"redpajama_set_name": "RedPajamaC4"}}`)), Options{Format: FormatSlimPajama}, ErrMissingField, "line 2", 1, ReasonMissingField, 1},
		{"parquet-no-column", "train-00000-of-00001.parquet", nil, Options{Format: FormatStarCoder}, ErrMissingField, "schema", 0, ReasonMissingField, 1},
		{"parquet-garbage", "x.parquet", []byte("PAR1 not really a parquet file PAR1"), Options{}, ErrCorrupt, "", 0, ReasonCorrupt, 1},
		{"invalid-utf8-jsonl", "u.jsonl", lines(good[:len(good)-1], []byte("{\"text\": \"caf\xe9\"}"), good[:len(good)-1]), Options{}, ErrInvalidUTF8, "line 5", 8, ReasonInvalidUTF8, 1},
		{"invalid-utf8-txt", "u.txt", []byte("caf\xe9 au lait"), Options{Format: FormatText}, ErrInvalidUTF8, "", 0, ReasonInvalidUTF8, 1},
		{"unsafe-member", "evil.tar", corpusgen.Tar([]corpusgen.Member{{Name: "ok.txt", Body: []byte("fine")}, {Name: "../escape.txt", Body: []byte("x")}, {Name: "/etc/abs.txt", Body: []byte("y")}, {Name: "a/../../b.txt", Body: []byte("z")}}), Options{Format: FormatOWT}, ErrUnsafePath, "member ../escape.txt", 1, ReasonUnsafePath, 3},
		{"empty-file", "empty.jsonl", []byte{}, Options{}, ErrEmptyFile, "byte 0", 0, ReasonEmptyFile, 1},
		{"too-large-jsonl", "big.jsonl", lines(good[:len(good)-1], []byte(`{"text": "`+strings.Repeat("x", 5000)+`"}`)), Options{MaxDocBytes: 3000}, ErrTooLarge, "line 5", 4, ReasonTooLarge, 1},
		{"too-large-line", "huge.jsonl", lines([]byte(`{"text": "`+strings.Repeat("y", 50000)+`"}`), []byte(`{"text": "after"}`)), Options{MaxDocBytes: 1000}, ErrTooLarge, "line 1", 1, ReasonTooLarge, 1},
		{"too-large-member", "big.tar", corpusgen.Tar([]corpusgen.Member{{Name: "small.txt", Body: []byte("small")}, {Name: "big.txt", Body: []byte(strings.Repeat("z", 5000))}}), Options{Format: FormatOWT, MaxDocBytes: 1000}, ErrTooLarge, "member big.txt", 1, ReasonTooLarge, 1},
		{"too-large-txt", "big.txt", []byte(strings.Repeat("w", 5000)), Options{Format: FormatText, MaxDocBytes: 1000}, ErrTooLarge, "", 0, ReasonTooLarge, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "in")
			p := filepath.Join(root, c.file)
			if c.name == "parquet-no-column" {
				if err := corpusgen.WriteTextParquet(p, "text", texts, 4); err != nil {
					t.Fatal(err)
				}
			} else {
				write(t, p, c.data)
			}
			// A good file beside the bad one, read first (sorted names).
			goodFile := "0000-good.jsonl"
			if c.opts.Format == FormatText {
				goodFile = "0000-good.txt"
				write(t, filepath.Join(root, goodFile), []byte(short[0].Body))
			} else if c.opts.Format == FormatOWT {
				goodFile = "0000-good.tar"
				write(t, filepath.Join(root, goodFile), corpusgen.Tar([]corpusgen.Member{{Name: "g.txt", Body: []byte(short[0].Body)}}))
			} else if c.opts.Format == FormatStarCoder {
				goodFile = ""
			} else if c.opts.Format == FormatSlimPajama {
				goodFile = "0000-good.jsonl"
				write(t, filepath.Join(root, goodFile), corpusgen.SlimPajamaLine(short[0].Body, "RedPajamaC4"))
			} else {
				write(t, filepath.Join(root, goodFile), good)
			}

			o := c.opts
			_, _, err := ingestDir(t, []string{root}, o)
			if err == nil {
				t.Fatal("bad input accepted under --on-error fail")
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v is not %v", err, c.err)
			}
			ie := firstInputError(t, err)
			if ie.File != c.file || !strings.Contains(ie.Position, c.pos) || !strings.Contains(err.Error(), c.file) {
				t.Fatalf("error %q: file %q position %q, want file %q position containing %q", err, ie.File, ie.Position, c.file, c.pos)
			}

			o.OnError = OnErrorSkip
			m, _ := mustIngest(t, []string{root}, o)
			if m.Counts.Rejected[c.reason] != c.rejects || sum(m.Counts.Rejected) != c.rejects {
				t.Fatalf("rejected %v, want %s=%d", m.Counts.Rejected, c.reason, c.rejects)
			}
			goodDocs := map[string]int64{"0000-good.jsonl": 4, "0000-good.txt": 1, "0000-good.tar": 1}[goodFile]
			if c.opts.Format == FormatSlimPajama {
				goodDocs = 1
			}
			if goodFile != "" && m.Inputs[0].Path != goodFile {
				t.Fatalf("inputs %+v", m.Inputs)
			}
			switch {
			case c.kept >= 0 && m.Counts.Documents != goodDocs+c.kept:
				t.Fatalf("kept %d, want %d + %d from the good file", m.Counts.Documents, c.kept, goodDocs)
			case c.kept < 0 && m.Counts.Documents < goodDocs: // truncated: what precedes the damage may survive
				t.Fatalf("kept %d, fewer than the good file's %d", m.Counts.Documents, goodDocs)
			}
			if len(m.Rejections) != int(c.rejects) || m.Rejections[0].File != c.file || !strings.Contains(m.Rejections[0].Position, c.pos) {
				t.Fatalf("rejections %+v", m.Rejections)
			}
		})
	}
}

func TestUTF8Repair(t *testing.T) {
	root := filepath.Join(t.TempDir(), "in")
	write(t, filepath.Join(root, "u.jsonl"), []byte("{\"text\": \"caf\xe9\"}\n{\"text\": \"ok\"}\n"))
	write(t, filepath.Join(root, "v.txt"), []byte("na\xefve"))
	m, dir := mustIngest(t, []string{root}, Options{UTF8: UTF8Repair})
	if m.Counts.Documents != 3 || m.Counts.UTF8Repaired != 2 {
		t.Fatalf("counts %+v", m.Counts)
	}
	docs := allDocs(t, dir)
	if docs[0].Text != "caf\uFFFD" || docs[2].Text != "na\uFFFDve" {
		t.Fatalf("repaired texts %q %q", docs[0].Text, docs[2].Text)
	}
}

func TestEmptyTextFiltered(t *testing.T) {
	root := filepath.Join(t.TempDir(), "in")
	write(t, filepath.Join(root, "e.jsonl"), []byte("{\"text\": \"\"}\n\n{\"text\": \"x\"}\n   \n"))
	m, _ := mustIngest(t, []string{root}, Options{})
	if m.Counts.Documents != 1 || m.Counts.Filtered[FilterEmptyText] != 1 || m.Counts.Read != 2 {
		t.Fatalf("counts %+v", m.Counts)
	}
}

func TestArchiveMembersCountedInOrder(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		h.Mode = 0o644
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "dir/", Typeflag: tar.TypeDir}, "")
	add(&tar.Header{Name: "dir/a.txt", Typeflag: tar.TypeReg}, "caf\xe9")
	add(&tar.Header{Name: "../b.txt", Typeflag: tar.TypeReg}, "b")
	add(&tar.Header{Name: "link.txt", Typeflag: tar.TypeSymlink, Linkname: "dir/a.txt"}, "")
	add(&tar.Header{Name: "hard.txt", Typeflag: tar.TypeLink, Linkname: "dir/a.txt"}, "")
	add(&tar.Header{Name: "notes.md", Typeflag: tar.TypeReg}, "# notes")
	add(&tar.Header{Name: "bad-\xff.txt", Typeflag: tar.TypeReg}, "fine text")
	add(&tar.Header{Name: "ok.txt", Typeflag: tar.TypeReg}, "ok")
	tw.Close()
	root := filepath.Join(t.TempDir(), "in")
	write(t, filepath.Join(root, "m.tar"), buf.Bytes())

	// The first error in input order is the invalid UTF-8 of dir/a.txt, not
	// the unsafe name that follows it.
	_, _, err := ingestDir(t, []string{root}, Options{Format: FormatOWT})
	if !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "member dir/a.txt") {
		t.Fatalf("first error: %v", err)
	}
	m, _ := mustIngest(t, []string{root}, Options{Format: FormatOWT, OnError: OnErrorSkip})
	want := Counts{Read: 7, Documents: 1,
		Filtered: map[string]int64{FilterNonRegular: 2, FilterNonText: 1},
		Rejected: map[string]int64{ReasonInvalidUTF8: 2, ReasonUnsafePath: 1}}
	if m.Counts.Read != want.Read || m.Counts.Documents != want.Documents || fmt.Sprint(m.Counts.Filtered) != fmt.Sprint(want.Filtered) || fmt.Sprint(m.Counts.Rejected) != fmt.Sprint(want.Rejected) {
		t.Fatalf("counts %+v, want %+v", m.Counts, want)
	}
	if m.Rejections[0].Position != "member dir/a.txt" || m.Rejections[1].Position != "member ../b.txt" {
		t.Fatalf("rejections out of order: %+v", m.Rejections)
	}
	m, _ = mustIngest(t, []string{root}, Options{Format: FormatOWT, OnError: OnErrorSkip, UTF8: UTF8Repair})
	if m.Counts.Documents != 3 || m.Counts.UTF8Repaired != 2 {
		t.Fatalf("repair: %+v", m.Counts)
	}
}

func TestRepairKeepsSizeLimit(t *testing.T) {
	root := filepath.Join(t.TempDir(), "in")
	write(t, filepath.Join(root, "r.txt"), []byte("\xffa\xffa\xffa")) // each run of bad bytes becomes 3 bytes
	_, _, err := ingestDir(t, []string{root}, Options{UTF8: UTF8Repair, MaxDocBytes: 8})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("6 bytes repaired to 12 under an 8-byte limit: %v", err)
	}
}

func TestCancelAndVanishingInputDoNotHang(t *testing.T) {
	texts := goTexts(t, 40)
	root := filepath.Join(t.TempDir(), "in")
	for i := 0; i < 8; i++ {
		write(t, filepath.Join(root, fmt.Sprintf("f%d.jsonl", i)), jsonlOf(texts[i*5:i*5+5]))
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := testwait.Within(t, "cancelled run", 20*time.Second, func() error {
		_, err := Run(ctx, []string{root}, Options{OutDir: filepath.Join(t.TempDir(), "o"), Workers: 1,
			Progress: func(p Progress) {
				if p.Phase == "ingest" {
					cancel()
				}
			}})
		return err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	cancel()

	// A file removed between hashing and reading fails the run cleanly.
	err = testwait.Within(t, "run with a vanished input", 20*time.Second, func() error {
		_, err := Run(context.Background(), []string{root}, Options{OutDir: filepath.Join(t.TempDir(), "o"), Workers: 1,
			Progress: func(p Progress) {
				if p.Phase == "hash" && p.Bytes == p.TotalBytes {
					os.Remove(filepath.Join(root, "f0.jsonl"))
				}
			}})
		return err
	})
	if err == nil {
		t.Fatal("vanished input not reported")
	}
}
