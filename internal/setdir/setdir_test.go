package setdir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/internal/store"
)

// TestSeal: a sealed manifest checks; a change of any byte does not.
func TestSeal(t *testing.T) {
	b := []byte("{\n  \"key\": \"k\",\n  \"checksum\": \"" + Unsealed + "\",\n  \"n\": 1\n}\n")
	sum, err := Seal(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSeal(b, sum); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := []byte(string(b))
		c[i] ^= 0x20
		if CheckSeal(c, sum) == nil {
			t.Errorf("byte %d (%q) changed and still checks", i, b[i])
		}
	}
}

// TestClaimAndSettle: Settle deletes what the old manifest named and what a
// claim covers, nothing else.
func TestClaimAndSettle(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"train-00000.arrow", "train-00001.arrow", "train-x.arrow", "old-00000.arrow", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	if err := Claim(store.Local(dir), TokenSchema, []string{"train-"}); err != nil {
		t.Fatal(err)
	}
	if err := Check(store.Local(dir), TokenSchema); err != nil {
		t.Fatalf("a claimed directory: %v", err)
	}
	if err := Check(store.Local(dir), DocSchema); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "token set") {
		t.Fatalf("another kind's claim: %v", err)
	}
	Settle(store.Local(dir), map[string]bool{"train-00000.arrow": true}, []string{"old-00000.arrow"})
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "notes.txt train-00000.arrow train-x.arrow" {
		t.Fatalf("left %v", left)
	}
	if err := Check(store.Local(dir), TokenSchema); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("claim settled, foreign files: %v", err)
	}
}

// TestSupersededSettledLater: a run killed after its manifest was written
// but before the files of the set it replaced were deleted leaves them
// recorded in the claim, and the next Settle (a re-run that reuses the new
// set) deletes them; the files the manifest in force names stay.
func TestSupersededSettledLater(t *testing.T) {
	dir := t.TempDir()
	d := store.Local(dir)
	for _, n := range []string{"train-aaa-00000.arrow", "train-aaa-00001.arrow", "train-bbb-00000.arrow", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	if err := Claim(d, TokenSchema, []string{"train-bbb-"}); err != nil {
		t.Fatal(err)
	}
	if err := Supersede(d, TokenSchema, []string{"train-aaa-00000.arrow", "train-aaa-00001.arrow"}); err != nil {
		t.Fatal(err)
	}
	// killed here: the new manifest (naming train-bbb-00000.arrow) written, nothing settled
	Settle(d, map[string]bool{"train-bbb-00000.arrow": true}, []string{"train-bbb-00000.arrow"})
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "notes.txt train-bbb-00000.arrow" {
		t.Fatalf("left %v", left)
	}
}
