//go:build linux

package tun

import (
	"github.com/udptunnel/udptunnel/internal/netns"
)

// OpenIn is Open inside the network namespace at netnsPath (such as
// /var/run/netns/NAME, made by `ip netns add NAME`, or /proc/PID/ns/net):
// the interface is created there, and only there do its packets meet the
// kernel. The calling goroutine and thread stay where they are; the
// device's descriptor works from any thread.
func OpenIn(netnsPath string, cfg Config) (*Device, error) {
	var d *Device
	err := netns.Do(netnsPath, func() error {
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
