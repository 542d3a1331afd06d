package train

import (
	"errors"
	"testing"
)

// TestParseDataURL: an s3:// URL is a set like a path; the ':' of its
// scheme is not a weight's.
func TestParseDataURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Data
	}{
		{"s3://bucket/tok", Data{Dir: "s3://bucket/tok", Weight: 1}},
		{"s3://bucket/tok:0.25", Data{Dir: "s3://bucket/tok", Weight: 0.25}},
		{"tok", Data{Dir: "tok", Weight: 1}},
		{"a:b:2", Data{Dir: "a:b", Weight: 2}},
	} {
		got, err := ParseData(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseData(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"s3://bucket/tok:x", "tok:0.5x", ":1"} {
		if _, err := ParseData(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseData(%q): %v", bad, err)
		}
	}
}
