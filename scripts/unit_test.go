package scripts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-project/cfs/internal/testfs"
	"github.com/cfs-project/cfs/internal/testimage"
)

// TestUpgradeUnitUnderSystemd runs cfs-upgrade.service, sandboxing and
// all, under a real systemd: the host's own /usr booted in a container
// (systemd-nspawn --volatile=yes, so nothing of the host is written but
// the test's sysroot), the unit started with systemctl inside it. The
// upgrade must deploy the new image as it does when run by hand.
//
// What the test changes in the unit, with a drop-in: the tools' PATH
// (they are built into a temporary directory), the registries.conf that
// makes the test registry reachable, and cfs-upgrade's arguments —
// --cmdline, because the container's /proc/cmdline is the host kernel's
// and boots no deployment, and --no-stage, because staging needs a host
// booted into ostree. Everything else, the sandboxing included, is the
// installed unit (make install's rewrite of /usr/bin/ to its PREFIX).
func TestUpgradeUnitUnderSystemd(t *testing.T) {
	nspawn := testfs.RequireTool(t, "systemd-nspawn")
	nsenter := testfs.RequireTool(t, "nsenter")
	h := newHost(t, "xfs")
	must(t, sh(t, nil, "bootc-set-unified", "composefs", "--sysroot", h.sysroot), "bootc-set-unified composefs")
	v2, err := testimage.Generate(testimage.Options{Seed: 11, Version: "2.0", UTF8Names: true})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Push(t, "os", "stable", v2)

	// What the container sees under /run/cfs-test: not under /tmp, which
	// PrivateTmp= hides from the service.
	const prefix = "/run/cfs-test"
	files := t.TempDir()
	conf := strings.TrimPrefix(h.env[0], "CONTAINERS_REGISTRIES_CONF=")
	copyFile(t, conf, filepath.Join(files, "registries.conf"))
	copyFile(t, h.cmdline, filepath.Join(files, "cmdline"))
	units := t.TempDir()
	unit, err := os.ReadFile("../units/cfs-upgrade.service")
	if err != nil {
		t.Fatal(err)
	}
	unit = bytes.ReplaceAll(unit, []byte("=/usr/bin/"), []byte("="+prefix+"/bin/"))
	writeFile(t, filepath.Join(units, "cfs-upgrade.service"), string(unit))
	writeFile(t, filepath.Join(units, "cfs-upgrade.service.d", "test.conf"), fmt.Sprintf(`[Service]
Environment=PATH=%[1]s/bin:/usr/sbin:/usr/bin:/sbin:/bin CONTAINERS_REGISTRIES_CONF=%[1]s/files/registries.conf
ExecStart=
ExecStart=%[1]s/bin/cfs-upgrade --cmdline %[1]s/files/cmdline --no-stage
`, prefix))

	c := bootContainer(t, nspawn, nsenter,
		"--bind="+h.sysroot+":/sysroot",
		"--bind-ro="+binDir+":"+prefix+"/bin",
		"--bind-ro="+files+":"+prefix+"/files",
		"--bind-ro="+units+":/etc/systemd/system",
		"--bind-ro=/etc/containers")
	must(t, c.run(t, "touch", "/run/ostree-booted"), "touch /run/ostree-booted")
	r := c.run(t, "systemctl", "start", "cfs-upgrade.service")
	journal := c.run(t, "journalctl", "--no-pager", "-o", "cat", "-u", "cfs-upgrade.service").stdout
	if r.code != 0 {
		t.Fatalf("systemctl start cfs-upgrade.service: exit %d\n%s\njournal:\n%s", r.code, r.stderr, journal)
	}
	show := must(t, c.run(t, "systemctl", "show", "-p", "Result", "-p", "ExecMainStatus", "cfs-upgrade.service"), "systemctl show").stdout
	if !strings.Contains(show, "Result=success") || !strings.Contains(show, "ExecMainStatus=0") {
		t.Errorf("cfs-upgrade.service: %s\njournal:\n%s", show, journal)
	}
	commit := regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).FindString(journal)
	if commit == "" {
		t.Fatalf("the unit printed no commit; journal:\n%s", journal)
	}
	if d, _ := filepath.Glob(filepath.Join(h.sysroot, "ostree/deploy/default/deploy", commit+".*")); len(d) == 0 {
		t.Errorf("commit %s is not deployed", commit)
	}
	meta := must(t, sh(t, nil, "ostree", "show", "--repo="+h.sysroot+"/ostree/repo", "--print-metadata-key=ostree.manifest-digest", commit), "ostree show").stdout
	if !strings.Contains(meta, v2.ManifestDigest.String()) {
		t.Errorf("deployed commit is of manifest %s, want %s", meta, v2.ManifestDigest)
	}
	// The sandboxing was in force, not just written down.
	props := must(t, c.run(t, "systemctl", "show", "-p", "ProtectHome", "-p", "PrivateTmp", "-p", "ReadOnlyPaths",
		"-p", "NoNewPrivileges", "-p", "ProtectClock", "-p", "SystemCallArchitectures", "cfs-upgrade.service"), "systemctl show").stdout
	for _, want := range []string{"ProtectHome=yes", "PrivateTmp=yes", "ReadOnlyPaths=/etc", "NoNewPrivileges=yes", "ProtectClock=yes", "SystemCallArchitectures=native"} {
		if !strings.Contains(props, want+"\n") {
			t.Errorf("cfs-upgrade.service ran without %s:\n%s", want, props)
		}
	}
	sec := c.run(t, "systemd-analyze", "security", "--no-pager", "cfs-upgrade.service").stdout
	if m := regexp.MustCompile(`Overall exposure level for cfs-upgrade.service: .*`).FindString(sec); m != "" {
		t.Logf("systemd-analyze security: %s", m)
	}
}

// container is a systemd booted by systemd-nspawn from the host's /usr.
type container struct {
	nsenter string
	pid     int // the container's PID 1, in our PID namespace
}

func (c *container) run(t *testing.T, args ...string) run {
	t.Helper()
	return sh(t, nil, c.nsenter, append([]string{"-t", strconv.Itoa(c.pid), "-a"}, args...)...)
}

// bootContainer boots the container and waits for it to finish booting;
// its cleanup powers it off and waits for systemd-nspawn to exit (all the
// mounts are in the container's own namespace and go with it).
func bootContainer(t *testing.T, nspawn, nsenter string, binds ...string) *container {
	t.Helper()
	machine := fmt.Sprintf("cfs-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	args := append([]string{"--directory=/", "--volatile=yes", "--boot", "--quiet",
		// Not registered with machined, not in a scope of its own: the
		// host need not run systemd.
		"--register=no", "--keep-unit", "--console=passive", "--machine=" + machine}, binds...)
	args = append(args, "--", "systemd.firstboot=off")
	cmd := exec.Command(nspawn, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := &container{nsenter: nsenter}
	t.Cleanup(func() {
		if c.pid != 0 {
			unix.Kill(c.pid, unix.Signal(34+4)) // SIGRTMIN+4 (glibc numbering): systemd powers off
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("the container did not power off in 30s; killing it")
			if c.pid != 0 {
				unix.Kill(c.pid, unix.SIGKILL) // ends its PID namespace
			}
			cmd.Process.Kill()
			<-exited
		}
		os.Remove("/run/systemd/nspawn/propagate/" + machine)
	})
	// The container's PID 1 is systemd-nspawn's child.
	deadline := time.Now().Add(30 * time.Second)
	for c.pid == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no container in 30s:\n%s", out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		// Its first children are systemd-nspawn itself, forked; the one
		// that counts has become systemd.
		children, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", cmd.Process.Pid))
		for _, f := range children {
			data, _ := os.ReadFile(f)
			for _, field := range strings.Fields(string(data)) {
				comm, _ := os.ReadFile("/proc/" + field + "/comm")
				if strings.TrimSpace(string(comm)) == "systemd" {
					c.pid, _ = strconv.Atoi(field)
				}
			}
		}
	}
	// systemctl cannot reach a systemd that has only just started; ask
	// until it answers, then wait for the boot to end.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var state string
	for ctx.Err() == nil {
		wait := exec.CommandContext(ctx, nsenter, "-t", strconv.Itoa(c.pid), "-a", "systemctl", "is-system-running", "--wait")
		out, _ := wait.Output()
		if state = strings.TrimSpace(string(out)); state == "running" || state == "degraded" {
			return c
		}
		time.Sleep(200 * time.Millisecond)
	}
	failed := c.run(t, "systemctl", "--failed", "--no-legend").stdout
	t.Fatalf("the container did not boot: state %q\nfailed units:\n%s\nnspawn:\n%s", state, failed, out.String())
	return nil
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(data))
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
