//go:build !linux

package hostudp

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sys is empty where the endpoint is unsupported.
type sys struct{}

func (e *Endpoint) open() error                   { return ErrUnsupported }
func (e *Endpoint) localAddrs() []netip.AddrPort  { return nil }
func (e *Endpoint) shutdown()                     {}
func (e *Endpoint) enqueue([]*stack.PacketBuffer) {}
