package fsverity

import "errors"

// ErrUnavailable means the kernel or the filesystem cannot do fs-verity
// (kernel built without CONFIG_FS_VERITY, filesystem without the verity
// feature, or a filesystem that never implements it). Callers are expected
// to carry on without kernel verity and rely on userspace digests.
var ErrUnavailable = errors.New("fs-verity is not available on this kernel or filesystem")

// ErrNotEnabled means the file system supports fs-verity but the file does
// not have it enabled, so there is no digest to measure.
var ErrNotEnabled = errors.New("fs-verity is not enabled on the file")
