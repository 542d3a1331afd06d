package setdir

import (
	"fmt"
	"strings"
)

// PartsGap describes what keeps the parts of a --part run from being each
// of its N parts exactly once: a part given twice (with where) or missing,
// by index, so that merge can say which. index[i] and of[i] are the part
// at locs[i] ("i/N"); an index of -1 is a whole set. It returns "" when
// every part is there once, and also where a whole set, a part out of
// range or parts of different N are among them: the caller names those.
func PartsGap(locs []string, index, of []int) string {
	if len(locs) == 0 {
		return ""
	}
	n := of[0]
	where := make([][]string, max(n, 0))
	for i := range locs {
		if index[i] < 0 || of[i] != n || index[i] >= n {
			return ""
		}
		where[index[i]] = append(where[index[i]], locs[i])
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
