// Package setdir holds the rules that estkit's set writers (ingest's
// document sets, shard's token sets) and their readers share about the
// directories that hold a set:
//
//   - Ownership: a writer writes only into a directory that is missing,
//     empty, or holds a set of its own kind that estkit made (its
//     manifest.json, or the claim a run of that kind left before its first
//     manifest). Anything else is refused with ErrNotOwned, naming the
//     directory and what is in it, before anything is created in it.
//   - Deletion: a writer deletes only files that a manifest of its own
//     named, or that a run of its own committed under a name its claim
//     announced (a run killed before its manifest).
//   - Integrity: files are checked against the sha256 the manifest
//     records: in full where a writer would reuse them (VerifyFiles), and
//     once per change of the files where training maps them (VerifyOnce,
//     with a marker keyed by each file's size, mtime and inode).
//
// The directory is a store.Dir: a local directory or an object storage
// prefix. The caller holds the directory's lock (Writer does) while it
// writes.
package setdir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/internal/store"
)

// File names of a set directory besides its data files.
const (
	ManifestName = "manifest.json"
	LockName     = ".lock"
	// ClaimName marks a directory that a writer of a kind has started to
	// fill: its schema, and the name prefixes of the files it commits.
	ClaimName = ".estkit-claim"
	// VerifiedName records which files VerifyOnce found intact.
	VerifiedName = ".estkit-verified"
)

// Schemas of the set kinds, as their manifests name them (ingest and
// shards define the same strings; setdir cannot import them).
const (
	DocSchema   = "estkit.docshards"
	TokenSchema = "estkit.tokshards"
)

// ErrNotOwned: the directory holds something other than a set of the
// writer's kind.
var ErrNotOwned = errors.New("not a directory estkit may write this set into")

// describe names what a manifest of schema s is.
func describe(s string) string {
	switch s {
	case DocSchema:
		return "a document set (estkit ingest)"
	case TokenSchema:
		return "a token set (estkit shard)"
	}
	return fmt.Sprintf("a manifest.json of schema %q", s)
}

// ours reports whether name is one of the bookkeeping files a writer or
// reader of a set keeps beside its data.
func ours(name string) bool {
	return name == LockName || name == ClaimName || name == VerifiedName || strings.HasPrefix(name, durable.TmpPrefix) ||
		strings.HasPrefix(name, JournalPrefix)
}

// Check refuses dir, with ErrNotOwned, unless it is missing, empty, or
// holds a set of schema (a manifest or a claim). It reads only.
func Check(dir store.Dir, schema string) error {
	names, err := dir.List()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if errors.Is(err, store.ErrNotDir) {
		return fmt.Errorf("%s: %w: it is a file", dir, ErrNotOwned)
	}
	if err != nil {
		return err
	}
	var others []string
	manifest := false
	for _, n := range names {
		switch {
		case n == ManifestName:
			manifest = true
		case !ours(n):
			others = append(others, n)
		}
	}
	want := describe(schema)
	if manifest {
		s, err := schemaOf(dir)
		if err != nil {
			return fmt.Errorf("%s: %w: its manifest.json is not one estkit wrote (%v); give an empty or new directory for %s", dir, ErrNotOwned, err, want)
		}
		if s == schema {
			return nil
		}
		return fmt.Errorf("%s: %w: it holds %s, and estkit writes %s only into an empty directory or one of its own kind", dir, ErrNotOwned, describe(s), want)
	}
	if c, err := readClaim(dir); err == nil && c.Schema == schema {
		return nil
	} else if err == nil {
		return fmt.Errorf("%s: %w: a run writing %s was interrupted there; estkit writes %s only into an empty directory or one of its own kind", dir, ErrNotOwned, describe(c.Schema), want)
	}
	if len(others) == 0 {
		return nil
	}
	if slices.Contains(others, "config.json") && (slices.Contains(others, "checkpoints") || slices.Contains(others, "metrics.jsonl")) {
		return fmt.Errorf("%s: %w: it holds a training run (config.json, checkpoints); give an empty or new directory for %s", dir, ErrNotOwned, want)
	}
	list := others
	if len(list) > 3 {
		list = append(slices.Clone(list[:3]), fmt.Sprintf("and %d more", len(others)-3))
	}
	return fmt.Errorf("%s: %w: it holds files estkit did not write (%s) and no manifest; give an empty or new directory for %s", dir, ErrNotOwned, strings.Join(list, ", "), want)
}

func schemaOf(dir store.Dir) (string, error) {
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return "", err
	}
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return "", err
	}
	if head.Schema == "" {
		return "", errors.New("no schema")
	}
	return head.Schema, nil
}

type claim struct {
	Schema   string   `json:"schema"`
	Prefixes []string `json:"prefixes"` // a committed file is PREFIX + digits + ".arrow"
	// Superseded are the files of the set a new manifest replaces,
	// recorded just before it is written, so that a run killed between
	// that manifest and their deletion leaves them for the next run to
	// delete rather than behind for good.
	Superseded []string `json:"superseded,omitempty"`
}

func readClaim(dir store.Dir) (*claim, error) {
	b, err := dir.ReadFile(ClaimName)
	if err != nil {
		return nil, err
	}
	var c claim
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Claim records, before a run commits its first file into dir, that files
// named PREFIX + digits + ".arrow" (for each prefix) are this kind's: a run
// killed before its manifest leaves them for the next run to delete. The
// prefixes of an earlier claim are kept.
func Claim(dir store.Dir, schema string, prefixes []string) error {
	c := &claim{Schema: schema}
	if old, err := readClaim(dir); err == nil && old.Schema == schema {
		c.Prefixes, c.Superseded = old.Prefixes, old.Superseded
	}
	for _, p := range prefixes {
		if !slices.Contains(c.Prefixes, p) {
			c.Prefixes = append(c.Prefixes, p)
		}
	}
	return writeClaim(dir, c)
}

func writeClaim(dir store.Dir, c *claim) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return dir.WriteFile(ClaimName, append(b, '\n'))
}

// Supersede records in dir's claim that the files named (the set a new
// manifest is about to replace) are to go once it is written (Settle).
func Supersede(dir store.Dir, schema string, named []string) error {
	c := &claim{Schema: schema}
	if old, err := readClaim(dir); err == nil && old.Schema == schema {
		*c = *old
	}
	for _, n := range named {
		if !slices.Contains(c.Superseded, n) {
			c.Superseded = append(c.Superseded, n)
		}
	}
	return writeClaim(dir, c)
}

// claimed reports whether name is PREFIX + digits + ".arrow".
func (c *claim) claimed(name string) bool {
	for _, p := range c.Prefixes {
		if rest, ok := strings.CutPrefix(name, p); ok {
			if digits, ok := strings.CutSuffix(rest, ".arrow"); ok && digits != "" && strings.Trim(digits, "0123456789") == "" {
				return true
			}
		}
	}
	return false
}

// Settle runs after a manifest naming keep is committed in dir: it
// deletes the files an earlier manifest named (named) and those a claimed
// run committed, unless keep holds them, then the claim. Deletion is best
// effort: a file left behind is named by no manifest and never read.
func Settle(dir store.Dir, keep map[string]bool, named []string) {
	c, cerr := readClaim(dir)
	if cerr == nil {
		named = append(slices.Clone(named), c.Superseded...) // a killed run's
	}
	for _, n := range named {
		if !keep[n] && path.Base(n) == n && filepath.Base(n) == n && !ours(n) && n != ManifestName {
			dir.Remove(n)
		}
	}
	if cerr == nil {
		names, _ := dir.List()
		for _, n := range names {
			if !keep[n] && c.claimed(n) {
				dir.Remove(n)
			}
		}
		dir.Remove(ClaimName)
		dir.Sync()
	}
	removeJournal(dir, nil)
}

// Unwind runs after a run failed: it deletes the files the run committed
// (committed) that the manifest still in dir does not name (keep), the
// temporaries, and, when the run created dir, dir itself if nothing else
// is left in it, so that a failure leaves what was there before. The
// claim goes once no file it covers is left.
func Unwind(dir store.Dir, committed []string, keep map[string]bool, created bool) {
	gone := map[string]bool{}
	for _, n := range committed {
		if !keep[n] {
			dir.Remove(n)
			gone[n] = true
		}
	}
	removeJournal(dir, gone)
	dir.RemoveTemps()
	// the claim goes too once no file it covers is left (a killed run's
	// files, claimed earlier, keep it)
	if c, err := readClaim(dir); err == nil {
		left := false
		names, _ := dir.List()
		for _, n := range names {
			if c.claimed(n) && !keep[n] {
				left = true
			}
		}
		if !left {
			dir.Remove(ClaimName)
		}
	}
	if !created {
		return
	}
	names, _ := dir.List()
	for _, n := range names {
		if n != LockName && n != ClaimName && !strings.HasPrefix(n, JournalPrefix) {
			return
		}
	}
	removeJournal(dir, nil)
	dir.Remove(ClaimName)
	dir.Remove(LockName)
	dir.RemoveDir()
}

// Entry is a file of a set as its manifest records it.
type Entry struct {
	Name   string
	Size   int64
	SHA256 string
}

// VerifyFile checks dir/e against its size and sha256; a mismatch is an
// error naming the file and wrapping corrupt, the caller's sentinel.
func VerifyFile(dir store.Dir, e Entry, corrupt error) error {
	return verifyFile(context.Background(), dir, e, corrupt)
}

func verifyFile(ctx context.Context, dir store.Dir, e Entry, corrupt error) error {
	p := dir.Join(e.Name)
	f, err := dir.Open(e.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Size() != e.Size {
		return fmt.Errorf("%s: %w: %d bytes, the manifest records %d (truncated or replaced)", p, corrupt, f.Size(), e.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, store.WithContext(ctx, f)); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return fmt.Errorf("%s: %w: sha256 %s, the manifest records %s", p, corrupt, got, e.SHA256)
	}
	return nil
}

// VerifyFiles checks every file in turn and returns the first mismatch.
func VerifyFiles(dir store.Dir, files []Entry, corrupt error) error {
	return verifyFiles(context.Background(), dir, files, corrupt)
}

func verifyFiles(ctx context.Context, dir store.Dir, files []Entry, corrupt error) error {
	for _, e := range files {
		if err := verifyFile(ctx, dir, e, corrupt); err != nil {
			return err
		}
	}
	return nil
}

// A manifest's checksum is the sha256 of the manifest file's bytes with
// the checksum's own 64 hex digits replaced by 64 "0": it covers every
// byte, so that an edit the JSON decoder would forgive (a key's case: Go
// matches field names case-insensitively) is caught too.
const sealKey = `"checksum": "`

// Unsealed is the value a writer gives a manifest's checksum field before
// it encodes it (with json.MarshalIndent) and calls Seal.
var Unsealed = strings.Repeat("0", 64)

// Seal fills in, in place, the checksum of b, a manifest encoded with its
// checksum field Unsealed, and returns it.
func Seal(b []byte) (string, error) {
	i := bytes.Index(b, []byte(sealKey+Unsealed+`"`))
	if i < 0 {
		return "", errors.New("manifest encoding lacks its checksum field")
	}
	h := sha256.Sum256(b)
	sum := hex.EncodeToString(h[:])
	i += len(sealKey)
	copy(b[i:i+len(Unsealed)], sum)
	return sum, nil
}

// CheckSeal checks the checksum of manifest bytes b, whose decoded
// checksum field is sum.
func CheckSeal(b []byte, sum string) error {
	i := bytes.Index(b, []byte(sealKey))
	if i < 0 || len(sum) != len(Unsealed) {
		return errors.New("no checksum")
	}
	i += len(sealKey)
	if i+len(sum) > len(b) || string(b[i:i+len(sum)]) != sum {
		return errors.New("the checksum field is not where estkit writes it")
	}
	c := bytes.Clone(b)
	copy(c[i:], Unsealed)
	h := sha256.Sum256(c)
	if hex.EncodeToString(h[:]) != sum {
		return errors.New("its bytes do not match its checksum (edited or damaged)")
	}
	return nil
}
