//go:build linux

package tun

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// OpenIn is Open inside the network namespace at netnsPath (such as
// /var/run/netns/NAME, made by `ip netns add NAME`, or /proc/PID/ns/net):
// the interface is created there, and only there do its packets meet the
// kernel. The calling goroutine and thread stay where they are; the
// device's descriptor works from any thread.
func OpenIn(netnsPath string, cfg Config) (*Device, error) {
	var d *Device
	err := inNetns(netnsPath, func() error {
		var err error
		d, err = Open(cfg)
		return err
	})
	if err != nil {
		if d != nil {
			d.Close()
		}
		return nil, err
	}
	return d, nil
}

// inNetns runs f on a fresh goroutine locked to its OS thread, with the
// thread switched into the network namespace at path (setns(2)), and
// switches the thread back before unlocking it. If switching back fails
// the thread stays locked, so that it exits with the goroutine instead of
// running other goroutines in the wrong namespace. Sockets and TUN
// devices that f creates belong to the namespace; goroutines f starts do
// not run in it.
func inNetns(path string, f func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tun: network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("tun: current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("tun: enter network namespace %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("tun: leave network namespace %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
