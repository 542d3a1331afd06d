package setdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/estkit/estkit/internal/store"
)

// Part is one of Of parts of a pipeline split across machines (--part
// Index/Of, Index from 0): each machine runs the same command with its
// own Index, and `estkit merge` joins the partial sets.
type Part struct {
	Index int `json:"index"`
	Of    int `json:"of"`
}

// ParsePart reads "i/N" (0 <= i < N).
func ParsePart(s string) (Part, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Part{}, fmt.Errorf("part %q: want i/N with 0 <= i < N (a Slurm array's SLURM_ARRAY_TASK_ID/N, a Kubernetes indexed Job's JOB_COMPLETION_INDEX/N)", s)
	}
	return Part{Index: i, Of: n}, nil
}

func (p Part) String() string { return fmt.Sprintf("%d/%d", p.Index, p.Of) }

// Range is the part's share of inputs of those sizes, in their order: the
// contiguous run [lo, hi) of the inputs whose first byte falls in the
// part's 1/Of of the total (each input weighing its size plus one, so that
// empty inputs spread too). Contiguous, so that the partial sets joined in
// part order are the inputs in their order, which is what makes a merge
// equal a single run; by bytes, so that the parts' work evens out. A pure
// function of the sizes: every machine computes the same split.
func (p Part) Range(sizes []int64) (lo, hi int) {
	var total uint64
	for _, s := range sizes {
		total += uint64(s) + 1
	}
	// input j (starting at byte c) belongs to the first part k with
	// c·Of < (k+1)·total, i.e. part floor(c·Of/total)
	partOf := func(c uint64) int {
		h, l := bits.Mul64(c, uint64(p.Of))
		q, _ := bits.Div64(h, l, total) // c < total, so h < total: no overflow
		return int(q)
	}
	lo, hi = len(sizes), len(sizes)
	var c uint64
	for j, s := range sizes {
		k := partOf(c)
		if k >= p.Index && lo == len(sizes) {
			lo = j
		}
		if k > p.Index {
			hi = j
			break
		}
		c += uint64(s) + 1
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// SchemaOf reads the schema named by the manifest in dir (a document or
// a token set), without checking the rest.
func SchemaOf(dir store.Dir) (string, error) { return schemaOf(dir) }

// ErrOtherPart: the directory holds a set of another place in a split (or
// a whole set where a part is written, or a part where a whole set is).
var ErrOtherPart = errors.New("holds another part")

// CheckPart refuses, with ErrOtherPart, a directory whose set (its
// manifest) is not of part p: a part written over another part's output
// is the slip of a job array whose --out did not take the index, and
// would silently replace that part. The same part, rebuilt, is allowed,
// as is a directory with no manifest.
func CheckPart(dir store.Dir, p Part) error {
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return nil // no set there (Check judged what else is)
	}
	var head struct {
		Part *Part `json:"part"`
	}
	if json.Unmarshal(b, &head) != nil {
		return nil
	}
	var have Part
	if head.Part != nil {
		have = *head.Part
	}
	if have == p {
		return nil
	}
	name := func(p Part) string {
		if p.Of == 0 {
			return "a whole set"
		}
		return "part " + p.String() + " of a split set"
	}
	return fmt.Errorf("%s %w: it holds %s, and this run writes %s; give each part its own --out (a job array's index in the name), or remove that set first", dir, ErrOtherPart, name(have), name(p))
}
