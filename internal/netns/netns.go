//go:build linux

// Package netns runs code inside a Linux network namespace: the one place
// the project calls setns(2), shared by the TUN endpoint (to create a
// device inside a namespace) and the e2e harness (to open sockets there).
// It is internal because its contract — a locked OS thread that must not be
// reused if it cannot return — is easy to misuse.
package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on a fresh goroutine locked to its OS thread, with the thread
// switched into the network namespace at path (such as /var/run/netns/NAME
// or /proc/PID/ns/net), and switches the thread back before unlocking it.
// If switching back fails the thread stays locked, so that it exits with
// the goroutine instead of running other goroutines in the wrong
// namespace. Sockets and TUN devices that f creates belong to the
// namespace and may be used from any goroutine afterwards; goroutines f
// starts do not run in it. Do returns f's error.
func Do(path string, f func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
