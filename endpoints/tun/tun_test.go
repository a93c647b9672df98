//go:build linux

package tun_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/tun"
	"github.com/udptunnel/udptunnel/stack"
)

// TestMain checks that no test leaves a goroutine behind: Close must stop
// fdbased's reader, and a stack's Close everything else.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain(os.Getenv(helperEnv)))
	}
	goleak.VerifyTestMain(m)
}

// modes are the two ways of serving a TUN: fdbased (the default) and the
// offloaded mode (Config.Offload).
var modes = []struct {
	name    string
	offload bool
}{{"fdbased", false}, {"offload", true}}

// forModes runs f as a subtest per mode.
func forModes(t *testing.T, f func(t *testing.T, offload bool)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { f(t, m.offload) })
	}
}

// requireTUN skips t where a TUN device cannot be made, saying why.
func requireTUN(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("TUN device: needs root (CAP_NET_ADMIN)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("TUN device: /dev/net/tun missing: %v", err)
	}
}

func TestOpenInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  tun.Config
	}{
		{"name-too-long", tun.Config{Name: "sixteen-bytes-xx"}},
		{"name-with-slash", tun.Config{Name: "ut/0"}},
		{"name-with-space", tun.Config{Name: "ut 0"}},
		{"name-dot-dot", tun.Config{Name: ".."}},
		{"mtu-below-68", tun.Config{MTU: 67}},
		{"mtu-above-65535", tun.Config{MTU: 65536}},
		{"offload-inner-offset", tun.Config{Offload: true, InnerOffset: 129}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tun.Open(tt.cfg)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%+v) succeeded, want an error", tt.cfg)
			}
			if !errors.Is(err, stack.ErrInvalid) {
				t.Errorf("Open(%+v) = %v, want an error wrapping stack.ErrInvalid", tt.cfg, err)
			}
		})
	}
}

// linkInfo is what `ip -j link show` says about an interface.
type linkInfo struct {
	IfName string   `json:"ifname"`
	MTU    uint32   `json:"mtu"`
	Flags  []string `json:"flags"`
}

func showLink(t *testing.T, ns *e2e.Netns, name string) (linkInfo, bool) {
	t.Helper()
	var links []linkInfo
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "link", "show")), &links); err != nil {
		t.Fatalf("ip -j link show: %v", err)
	}
	for _, l := range links {
		if l.IfName == name {
			return l, true
		}
	}
	return linkInfo{}, false
}

func TestOpenIn(t *testing.T) { forModes(t, testOpenIn) }

func testOpenIn(t *testing.T, offload bool) {
	requireTUN(t)
	ns := e2e.NewNetns(t, "ut-tun")
	d, err := tun.OpenIn(ns.Path(), tun.Config{Name: "ut0", MTU: 1400, Offload: offload})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Name() != "ut0" || d.MTU() != 1400 {
		t.Errorf("Name, MTU = %q, %d; want ut0, 1400", d.Name(), d.MTU())
	}
	if got := d.LinkEndpoint().MTU(); got != 1400 {
		t.Errorf("LinkEndpoint().MTU() = %d, want 1400", got)
	}
	l, ok := showLink(t, ns, "ut0")
	if !ok {
		t.Fatal("ut0 not in the namespace")
	}
	if l.MTU != 1400 || !slices.Contains(l.Flags, "UP") {
		t.Errorf("ut0 in the namespace: mtu %d flags %v; want mtu 1400 and UP", l.MTU, l.Flags)
	}
	// Only in the namespace: the host's own namespace has no ut0.
	if _, err := net.InterfaceByName("ut0"); err == nil {
		t.Error("ut0 exists in the test's own network namespace too")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := showLink(t, ns, "ut0"); ok {
		t.Error("ut0 still exists after Close")
	}
}

// TestOpenName checks names the kernel picks and names already taken.
func TestOpenName(t *testing.T) { forModes(t, testOpenName) }

func testOpenName(t *testing.T, offload bool) {
	requireTUN(t)
	ns := e2e.NewNetns(t, "ut-tun")
	d, err := tun.OpenIn(ns.Path(), tun.Config{Offload: offload})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := showLink(t, ns, d.Name()); !ok || d.Name() == "" {
		t.Errorf("the kernel's choice of name %q is not in the namespace", d.Name())
	}
	// Taken by a TUN interface in use (EBUSY) and by an interface of
	// another kind (EINVAL).
	ns.Run(t, "ip", "link", "add", "vx1", "type", "vxlan", "id", "1", "dstport", "4789")
	for _, name := range []string{d.Name(), "vx1"} {
		d2, err := tun.OpenIn(ns.Path(), tun.Config{Name: name, Offload: offload})
		if err == nil {
			d2.Close()
		}
		if !errors.Is(err, stack.ErrExists) {
			t.Errorf("OpenIn(%s) = %v, want an error wrapping stack.ErrExists", name, err)
		}
	}
}

func TestOpenInBadNamespace(t *testing.T) {
	_, err := tun.OpenIn("/nonexistent/netns", tun.Config{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenIn(/nonexistent/netns) = %v, want an error wrapping ErrNotExist", err)
	}
}

// newHost returns a stack whose NIC is a TUN device ut0 in a fresh
// namespace, with 10.201.0.1/24 on our side and 10.201.0.2/24 on the
// kernel's.
func newHost(t *testing.T, offload bool) (*e2e.Netns, *tun.Device, *stack.Stack) {
	t.Helper()
	requireTUN(t)
	ns := e2e.NewNetns(t, "ut-tun")
	d, err := tun.OpenIn(ns.Path(), tun.Config{Name: "ut0", Offload: offload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ns.Run(t, "ip", "addr", "add", "10.201.0.2/24", "dev", "ut0")
	st := stack.New(stack.Options{})
	t.Cleanup(st.Close)
	nic, err := st.AddNIC(d.LinkEndpoint(), stack.NICOptions{Name: "ut0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(nic, netip.MustParsePrefix("10.201.0.1/24")); err != nil {
		t.Fatal(err)
	}
	return ns, d, st
}

func TestPing(t *testing.T) { forModes(t, testPing) }

func testPing(t *testing.T, offload bool) {
	ns, _, st := newHost(t, offload)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := e2e.Ping(ctx, st, netip.MustParseAddr("10.201.0.2"), 3, 2*time.Second); err != nil || r.Received != 3 {
		t.Errorf("stack pings the kernel: %v, %v", r, err)
	}
	t.Run("kernel-pings-stack", func(t *testing.T) {
		if _, err := exec.LookPath("ping"); err != nil {
			t.Skip("needs the ping command (iputils-ping), not found in PATH")
		}
		ns.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.201.0.1")
	})
}

// TestCloseWhileAttached closes the device while its NIC is still in a
// stack that sends through it: sends fail, nothing crashes, and the stack
// closes afterwards without waiting on the dead reader.
func TestCloseWhileAttached(t *testing.T) { forModes(t, testCloseWhileAttached) }

func testCloseWhileAttached(t *testing.T, offload bool) {
	_, d, st := newHost(t, offload)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := st.Ping(ctx, netip.MustParseAddr("10.201.0.2"), 1, 56); err != nil {
		t.Fatalf("ping before Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer pcancel()
	if _, err := st.Ping(pctx, netip.MustParseAddr("10.201.0.2"), 2, 56); err == nil {
		t.Error("ping through a closed TUN device succeeded")
	}
	st.Close()
}

// openFDs counts the process's descriptors by what they point at.
func openFDs(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[target]++
		}
	}
	return m
}

// TestCloseReleasesDescriptors opens and closes devices attached to stacks
// and checks that no TUN descriptor stays open. gVisor's fdbased endpoint
// never closes the eventfd it makes to stop its reader (link/stopfd), so
// each Open leaves one eventfd behind; the test tolerates exactly that.
func TestCloseReleasesDescriptors(t *testing.T) { forModes(t, testCloseReleasesDescriptors) }

func testCloseReleasesDescriptors(t *testing.T, offload bool) {
	requireTUN(t)
	ns := e2e.NewNetns(t, "ut-tun")
	const n = 4
	before := openFDs(t)
	for range n {
		d, err := tun.OpenIn(ns.Path(), tun.Config{Name: "ut0", Offload: offload})
		if err != nil {
			t.Fatal(err)
		}
		st := stack.New(stack.Options{})
		if _, err := st.AddNIC(d.LinkEndpoint(), stack.NICOptions{}); err != nil {
			t.Fatal(err)
		}
		st.Close()
		d.Close()
	}
	after := openFDs(t)
	if got := after["/dev/net/tun"] - before["/dev/net/tun"]; got != 0 {
		t.Errorf("%d /dev/net/tun descriptors left open after %d Open/Close", got, n)
	}
	const eventfd = "anon_inode:[eventfd]"
	if got := after[eventfd] - before[eventfd]; got > n {
		t.Errorf("%d eventfds left after %d Open/Close, want at most %d (gVisor's stopfd)", got, n, n)
	}
	for k, v := range after {
		if k != eventfd && v > before[k] {
			t.Errorf("%d more descriptors to %s after %d Open/Close", v-before[k], k, n)
		}
	}
}

// The permission and missing-device tests run Open in a child process of
// the test binary: in a user namespace of its own (root there, but without
// CAP_NET_ADMIN over the network namespace), and in a mount namespace where
// /dev/net is an empty tmpfs.
const helperEnv = "UDPTUNNEL_TUN_TEST_HELPER"

func helperMain(mode string) int {
	if mode == "nodev" {
		if err := unix.Mount("tmpfs", "/dev/net", "tmpfs", 0, ""); err != nil {
			fmt.Printf("mount tmpfs on /dev/net: %v\n", err)
			return 2
		}
	}
	d, err := tun.Open(tun.Config{})
	if err == nil {
		d.Close()
		fmt.Println("open succeeded")
		return 3
	}
	if d, err2 := tun.Open(tun.Config{Offload: true}); err2 == nil {
		d.Close()
		fmt.Println("offloaded open succeeded")
		return 3
	} else if !errors.Is(err2, tun.ErrPermission) && !errors.Is(err2, tun.ErrNoTUN) {
		fmt.Printf("offloaded open: unexpected error: %v\n", err2)
		return 4
	} else if errors.Is(err, tun.ErrPermission) != errors.Is(err2, tun.ErrPermission) {
		fmt.Printf("the modes disagree: %v; offloaded: %v\n", err, err2)
		return 4
	}
	switch {
	case mode == "nocap" && errors.Is(err, tun.ErrPermission),
		mode == "nodev" && errors.Is(err, tun.ErrNoTUN):
		fmt.Println(err)
		return 0
	}
	fmt.Printf("unexpected error: %v\n", err)
	return 4
}

func runHelper(t *testing.T, mode string, attr *syscall.SysProcAttr) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled binary otherwise sleeps a second at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out)
	}
	t.Logf("helper %s: %s", mode, out)
}

func TestOpenWithoutPermission(t *testing.T) {
	requireTUN(t)
	runHelper(t, "nocap", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER})
}

func TestOpenWithoutDevice(t *testing.T) {
	requireTUN(t)
	runHelper(t, "nodev", &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS})
}
