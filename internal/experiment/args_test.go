package main

import (
	"math"
	"strings"
	"testing"
)

// TestParseHorizonsTooLong: a horizon whose steps overflow an int, or
// exceed what estkit train accepts, is refused naming it, not silently
// turned into the 10-step minimum (1e300) or left for train to refuse
// after the data was prepared.
func TestParseHorizonsTooLong(t *testing.T) {
	for _, s := range []string{"1e300", "0.5,1e300", "1e12"} {
		if hs, err := parseHorizons(s, 1); err == nil || !strings.Contains(err.Error(), "-horizons") {
			t.Errorf("-horizons %s: %v, %v (want an error naming -horizons)", s, hs, err)
		}
	}
	if _, err := parseHorizons("0.5,2,8", 1); err != nil {
		t.Errorf("the default horizons: %v", err)
	}
}

// TestCheckScale: -scale must be a finite number above 0; NaN, 0 and
// negatives were taken as the 10-step minimum, and in the horizon study
// blamed on -horizons ("give the same number of steps").
func TestCheckScale(t *testing.T) {
	for _, s := range []float64{0, -1, math.NaN(), math.Inf(1), 1e300} {
		if err := checkScale(s); err == nil || !strings.Contains(err.Error(), "-scale") {
			t.Errorf("-scale %v: %v (want an error naming -scale)", s, err)
		}
	}
	for _, s := range []float64{1, 0.02, 2} {
		if err := checkScale(s); err != nil {
			t.Errorf("-scale %v: %v", s, err)
		}
	}
}
