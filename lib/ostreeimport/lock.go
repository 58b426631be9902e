package ostreeimport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// sharedLock takes ostree's repo/.lock shared for the whole import.
//
// lib/ostree takes the same lock lazily, at its first write, and skips it
// when every object it would write already exists. The importer must hold
// it before its first HasObject check instead: the file objects cfs-clone
// wrote are unreferenced until our commit exists, and a concurrent
// `ostree prune` (which takes the lock exclusively) would delete them. OFD
// read locks from two descriptions of one process coexist, so this does
// not conflict with lib/ostree's own lock.
func sharedLock(repoPath string, timeout time.Duration) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(repoPath, ".lock"), os.O_CREATE|os.O_RDWR, 0o660)
	if err != nil {
		return nil, fmt.Errorf("ostree repo lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	lk := unix.Flock_t{Type: unix.F_RDLCK}
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if errors.Is(err, unix.EINVAL) { // no OFD locks: ostree falls back to flock
			err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		}
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("ostree repo lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("ostree repo lock %s: held exclusively by another process (prune?) for %v", f.Name(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
