//go:build linux

package e2e_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/udptunnel/udptunnel/e2e"
)

// nsInode returns the inode of a network namespace file, its identity.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestNetns(t *testing.T) {
	var path string
	t.Run("lifetime", func(t *testing.T) {
		ns := e2e.NewNetns(t, "ut-netns")
		path = ns.Path()
		if path != "/var/run/netns/"+ns.Name() {
			t.Errorf("Path() = %q, want /var/run/netns/%s", path, ns.Name())
		}

		// A fresh namespace has only its loopback device.
		links := strings.Fields(ns.Run(t, "ip", "-br", "link", "show"))
		if len(links) == 0 || links[0] != "lo" || strings.Contains(strings.Join(links, " "), "ut0") {
			t.Errorf("links in a fresh namespace: %v, want only lo", links)
		}

		// Do runs in the namespace and returns the thread to ours.
		runtime.LockOSThread()
		ours := nsInode(t, "/proc/thread-self/ns/net")
		runtime.UnlockOSThread()
		want := nsInode(t, path)
		if ours == want {
			t.Fatal("the test already runs in the new namespace")
		}
		var inside uint64
		var ln net.Listener
		ns.Run(t, "ip", "link", "set", "lo", "up")
		err := ns.Do(func() error {
			inside = nsInode(t, "/proc/thread-self/ns/net")
			var err error
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		})
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		defer ln.Close()
		if inside != want {
			t.Errorf("inside Do the thread's namespace is inode %d, want the new namespace's %d", inside, want)
		}
		// The listener lives in the namespace: ss there lists its port.
		port := ln.Addr().(*net.TCPAddr).Port
		if out := ns.Run(t, "ss", "-Hltn"); !strings.Contains(out, ":"+strconv.Itoa(port)) {
			t.Errorf("ss -ltn in the namespace does not list port %d:\n%s", port, out)
		}
		for range 2 * runtime.GOMAXPROCS(0) {
			runtime.LockOSThread()
			if got := nsInode(t, "/proc/thread-self/ns/net"); got != ours {
				t.Errorf("after Do a thread is in namespace inode %d, want ours %d", got, ours)
			}
			runtime.UnlockOSThread()
		}

		sentinel := errors.New("from f")
		if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("Do returned %v, want f's error", err)
		}
	})
	if path == "" {
		return // skipped
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still exists after its test ended (stat: %v)", path, err)
	}
}
