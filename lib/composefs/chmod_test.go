package composefs

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/lib/fsverity"
)

// TestChmodFailure makes the kernel refuse every chmod (a seccomp filter
// in a child process) while an object is written, on the O_TMPFILE path
// and on the named fallback: the write must fail, saying why, and leave
// no temporary file behind, rather than store an object its readers may
// not be able to open.
func TestChmodFailure(t *testing.T) {
	if mode := os.Getenv("CFS_TEST_CHMOD_FILTER"); mode != "" {
		chmodFailureChild(t, mode, os.Getenv("CFS_TEST_CHMOD_REPO"))
		return
	}
	for _, mode := range []string{"tmpfile", "named"} {
		t.Run(mode, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "composefs")
			cmd := exec.Command(os.Args[0], "-test.run=^TestChmodFailure$", "-test.v")
			cmd.Env = append(os.Environ(), "CFS_TEST_CHMOD_FILTER="+mode, "CFS_TEST_CHMOD_REPO="+repo)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("world-readable")) || !bytes.Contains(out, []byte("operation not permitted")) {
				t.Errorf("the write did not fail on the refused chmod:\n%s", out)
			}
			if mode == "named" && !bytes.Contains(out, []byte(".tmp-object-")) {
				t.Errorf("the fallback path was not taken:\n%s", out)
			}
			err = filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("left behind: %s", p)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func chmodFailureChild(t *testing.T, mode, path string) {
	r, err := Create(path, fsverity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := refuseChmod(mode == "named"); err != nil {
		t.Fatalf("installing the seccomp filter: %v", err)
	}
	_, _, _, err = r.WriteObject(strings.NewReader(strings.Repeat("x", 10000)))
	if err == nil {
		t.Fatal("WriteObject succeeded with chmod refused")
	}
	t.Logf("WriteObject: %v", err)
}

// refuseChmod installs, in every thread of this process, a seccomp filter
// that fails fchmod, fchmodat and fchmodat2 with EPERM and, if noTmpfile,
// an openat with O_TMPFILE with EOPNOTSUPP, as a filesystem without it
// does.
func refuseChmod(noTmpfile bool) error {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return unix.ENOTSUP // the flags word is read as little-endian below
	}
	const (
		fchmodat2 = 452 // the same number on every architecture
		argFlags  = 16 + 2*8
		allow     = unix.SECCOMP_RET_ALLOW
		eperm     = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enotsup   = unix.SECCOMP_RET_ERRNO | uint32(unix.EOPNOTSUPP)
	)
	openat := uint32(unix.SYS_OPENAT)
	if !noTmpfile {
		openat = ^uint32(0)
	}
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	prog := []unix.SockFilter{
		/* 0 */ ld(0), // syscall number
		/* 1 */ jeq(unix.SYS_FCHMOD, 7, 0),
		/* 2 */ jeq(unix.SYS_FCHMODAT, 6, 0),
		/* 3 */ jeq(fchmodat2, 5, 0),
		/* 4 */ jeq(openat, 0, 3),
		/* 5 */ ld(argFlags),
		/* 6 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: unix.O_TMPFILE},
		/* 7 */ jeq(unix.O_TMPFILE, 2, 0),
		/* 8 */ ret(allow),
		/* 9 */ ret(eperm),
		/* 10 */ ret(enotsup),
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return errno
	}
	return nil
}

// TestObjectModeUnderDefaultACL: every object is 0644 although the mode
// O_TMPFILE gives it is not, under a default ACL on objects/ (which
// replaces the umask) and under a strict umask: the chmod skipped when
// the mode is already right must not be skipped then, for the first
// object of a handle nor for the ones after it.
func TestObjectModeUnderDefaultACL(t *testing.T) {
	for _, how := range []string{"acl", "umask"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "composefs")
			r, err := Create(path, fsverity.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			objects := filepath.Join(path, "objects")
			if how == "acl" {
				// user::rw- group::r-- other::--- as system.posix_acl_default.
				acl := binary.LittleEndian.AppendUint32(nil, 2)
				for _, e := range [][2]uint16{{0x01, 6}, {0x04, 4}, {0x20, 0}} {
					acl = binary.LittleEndian.AppendUint16(acl, e[0])
					acl = binary.LittleEndian.AppendUint16(acl, e[1])
					acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
				}
				if err := unix.Setxattr(objects, "system.posix_acl_default", acl, 0); err != nil {
					t.Skipf("no default ACL on %s: %v", objects, err)
				}
			} else {
				defer unix.Umask(unix.Umask(0o077))
			}
			// What O_TMPFILE gives here, to know the test can fail.
			probe, err := os.OpenFile(filepath.Join(objects, "probe"), os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := probe.Stat()
			probe.Close()
			os.Remove(probe.Name())
			if st.Mode().Perm() == 0o644 {
				t.Fatalf("a new file in objects/ is 0644 already under the %s", how)
			}
			var ids [][]byte
			for i := range 3 {
				id, _, _, err := r.WriteObject(strings.NewReader(strings.Repeat("x", 100+i)))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				fi, err := os.Stat(r.ObjectPath(id))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("object %d is %v, want 0644 (a new file there is %v)", i, fi.Mode().Perm(), st.Mode().Perm())
				}
			}
		})
	}
}
