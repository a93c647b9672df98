//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/udptunnel/udptunnel/internal/netns"
)

// Netns is a Linux network namespace made for one test: a kernel host that
// the test's userspace stacks talk to (through a TUN device made with
// tun.OpenIn, for example). It exists until the test ends. It uses the
// `ip` command (iproute2) and needs root.
type Netns struct {
	name string
}

var netnsSeq atomic.Uint32

// NewNetns creates a network namespace named after prefix, the process and
// a counter (`ip netns add`), and deletes it when t and its subtests end,
// whether they pass or fail (`ip netns del`, from t.Cleanup). It skips t,
// saying what is missing, when the process is not root or `ip` is not
// installed.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel network namespace: needs root (ip netns add)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("kernel network namespace: needs the ip command (iproute2), not found in PATH")
	}
	n := &Netns{name: fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), netnsSeq.Add(1))}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.name, err, out)
		}
	})
	return n
}

// Name returns the namespace's name, as `ip netns` knows it.
func (n *Netns) Name() string { return n.name }

// Path returns the namespace's file, /var/run/netns/NAME, for setns(2) and
// tun.OpenIn.
func (n *Netns) Path() string { return "/var/run/netns/" + n.name }

// Run runs a command inside the namespace (`ip netns exec NAME args...`)
// and returns its standard output. It fails t with the command's output
// when the command fails.
func (n *Netns) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Command(args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("in netns %s: %s: %v\n%s%s", n.name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// Command returns a command that runs args inside the namespace, for
// commands that run in the background (a capture) or may fail.
func (n *Netns) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// Do runs f on a goroutine locked to an OS thread that has entered the
// namespace (setns(2)), so that the sockets f creates (net.Dial,
// net.Listen) live in the namespace; they may be used from any goroutine
// afterwards. The thread returns to its own namespace after f; should that
// fail, the thread is not reused but ends with the goroutine. Goroutines
// that f starts do not run in the namespace. Do returns f's error.
func (n *Netns) Do(f func() error) error { return netns.Do(n.Path(), f) }
