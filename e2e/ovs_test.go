//go:build linux

package e2e_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/udptunnel/udptunnel/e2e"
)

// TestOVSInstance starts a private Open vSwitch, makes a userspace
// (netdev) bridge and checks that its port is in the namespace and nowhere
// else, then that the instance's cleanup leaves no process and no file.
func TestOVSInstance(t *testing.T) {
	ns := e2e.NewNetns(t, "ut-ovs")
	var dir string
	var pids []int
	t.Run("up", func(t *testing.T) {
		o := e2e.NewOVS(t, ns)
		dir = o.Dir()
		o.Vsctl(t, "add-br", "br-test", "--", "set", "bridge", "br-test", "datapath_type=netdev")
		if out := ns.Run(t, "ip", "-br", "link", "show", "br-test"); !strings.HasPrefix(out, "br-test") {
			t.Errorf("ip link show br-test in the namespace: %q", out)
		}
		if _, err := os.Stat("/sys/class/net/br-test"); err == nil {
			t.Error("br-test exists outside the namespace")
		}
		if out := o.Appctl(t, "dpif/show"); !strings.Contains(out, "netdev@ovs-netdev") {
			t.Errorf("ovs-appctl dpif/show has no userspace datapath:\n%s", out)
		}
		for _, f := range []string{"ovsdb-server.pid", "ovs-vswitchd.pid"} {
			b, err := os.ReadFile(dir + "/" + f)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			pids = append(pids, pid)
		}
	})
	if dir == "" {
		return // skipped or failed before starting
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there after cleanup (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after cleanup: %v", dir, err)
	}
}
