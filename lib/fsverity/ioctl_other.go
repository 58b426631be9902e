//go:build !linux

package fsverity

import (
	"fmt"
	"os"
)

// Enable reports ErrUnavailable: fs-verity is a Linux feature. The stub keeps
// the package (and the userspace digest) building on developer machines.
func Enable(f *os.File, alg Algorithm) error {
	return fmt.Errorf("fs-verity enable %s: %w", f.Name(), ErrUnavailable)
}

// Measure reports ErrUnavailable: fs-verity is a Linux feature.
func Measure(f *os.File) (Algorithm, []byte, error) {
	return 0, nil, fmt.Errorf("fs-verity measure %s: %w", f.Name(), ErrUnavailable)
}
