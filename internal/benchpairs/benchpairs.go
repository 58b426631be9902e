// Package benchpairs holds what the side-by-side benchmarks share: how
// many interleaved (ours, peer) pairs to run and the median they report.
// The machine is shared, so one run proves little; medians of
// interleaved pairs are what can be compared.
package benchpairs

import (
	"os"
	"slices"
	"strconv"
)

// Count is CFS_BENCH_PAIRS when it is a positive number, else def.
func Count(def int) int {
	if n, err := strconv.Atoi(os.Getenv("CFS_BENCH_PAIRS")); err == nil && n > 0 {
		return n
	}
	return def
}

// Median is the median of xs (the mean of the middle two for an even
// count); xs is not reordered.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
