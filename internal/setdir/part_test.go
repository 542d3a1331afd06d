package setdir

import "testing"

// TestPartRange: for every N the parts' ranges are contiguous, in order,
// disjoint and cover the inputs; bad specs are refused.
func TestPartRange(t *testing.T) {
	sizes := []int64{10, 0, 500, 3, 3, 3, 1000, 0, 0, 7}
	for n := 1; n <= 12; n++ {
		next := 0
		for i := range n {
			lo, hi := Part{i, n}.Range(sizes)
			if lo != next || hi < lo {
				t.Fatalf("part %d/%d: [%d, %d), want it to start at %d", i, n, lo, hi, next)
			}
			next = hi
		}
		if next != len(sizes) {
			t.Fatalf("N=%d: parts end at %d of %d inputs", n, next, len(sizes))
		}
	}
	if lo, hi := (Part{0, 1}).Range(nil); lo != 0 || hi != 0 {
		t.Fatalf("no inputs: [%d, %d)", lo, hi)
	}
	for _, bad := range []string{"", "1", "2/2", "-1/3", "0/0", "a/b", "1/x"} {
		if _, err := ParsePart(bad); err == nil {
			t.Errorf("ParsePart(%q) accepted", bad)
		}
	}
	if p, err := ParsePart(" 2/3 "); err != nil || p != (Part{2, 3}) {
		t.Fatalf("ParsePart(2/3) = %v, %v", p, err)
	}
}
