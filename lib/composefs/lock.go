package composefs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// LockExclusive turns the shared lock this handle holds into the exclusive
// one composefs-rs's garbage collection takes: it waits until every other
// handle (a pull, a clone, another tool) has closed its repository, and
// while it is held no new handle opens (Open waits for LOCK_SH). Only a
// collector needs it, and it must hold no second handle on the same
// repository in this process: that one would wait for itself.
func (r *Repository) LockExclusive() error { return r.relock(unix.LOCK_EX) }

// LockShared goes back to the shared lock every handle holds.
func (r *Repository) LockShared() error { return r.relock(unix.LOCK_SH) }

func (r *Repository) relock(how int) error {
	if r.dir == nil {
		return errors.New("composefs repository is closed")
	}
	// A blocking flock, as composefs-rs's: the kernel drops the shared
	// lock while the conversion waits, so two collectors never deadlock.
	for {
		err := unix.Flock(int(r.dir.Fd()), how)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("locking composefs repository %s: %w", r.path, err)
		}
		return nil
	}
}
