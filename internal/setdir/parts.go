package setdir

import (
	"fmt"
	"strings"
)

// PartIndex is p's index among the parts, -1 for a whole set (nil): the
// order merge reads the parts in.
func PartIndex(p *Part) int {
	if p == nil {
		return -1
	}
	return p.Index
}

// PartsGap describes what keeps the parts of a --part run from being each
// of its N parts exactly once: a part given twice (with where) or missing,
// by index, so that merge can say which. parts[i] is the part at locs[i];
// nil is a whole set. It returns "" when every part is there once, and
// also where a whole set, a part out of range or parts of different N are
// among them: the caller names those.
func PartsGap(locs []string, parts []*Part) string {
	if len(locs) == 0 || parts[0] == nil {
		return ""
	}
	n := parts[0].Of
	where := make([][]string, max(n, 0))
	for i, p := range parts {
		if p == nil || p.Of != n || p.Index < 0 || p.Index >= n {
			return ""
		}
		where[p.Index] = append(where[p.Index], locs[i])
	}
	var missing []string
	for k, w := range where {
		if len(w) > 1 {
			return fmt.Sprintf("part %d of %d is given twice (%s)", k, n, strings.Join(w, ", "))
		}
		if len(w) == 0 {
			missing = append(missing, fmt.Sprint(k))
		}
	}
	switch len(missing) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("part %s of %d is missing", missing[0], n)
	}
	return fmt.Sprintf("parts %s of %d are missing", strings.Join(missing, ", "), n)
}
