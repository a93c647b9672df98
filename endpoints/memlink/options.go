package memlink

import (
	"errors"
	"fmt"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Defaults applied to zero-valued Options fields.
const (
	// DefaultMTU is the network-layer MTU used when Options.MTU is zero.
	DefaultMTU = 1500

	// DefaultQueueLen is the receive queue bound, in packets, used when
	// Options.QueueLen is zero.
	DefaultQueueLen = 1024
)

// Limits enforced by Options validation.
const (
	// minMTU is the smallest MTU an IPv4 host must accept (RFC 791).
	minMTU = 68

	// maxMTU is the largest packet an IPv4 or non-jumbo IPv6 header can
	// describe.
	maxMTU = 65535
)

// reorderIdle is how long a packet held back for reordering waits for a
// later packet to overtake it before it is released anyway, so a held
// packet is never stuck on an idle wire.
const reorderIdle = 5 * time.Millisecond

// ErrInvalidOptions is wrapped by the errors NewPair and NewHub return for an
// Options value they cannot use; the message names the offending field.
var ErrInvalidOptions = errors.New("memlink: invalid options")

// Options configures a pair or a hub. The zero value is a lossless,
// asynchronous, raw-IP wire with an MTU of DefaultMTU.
type Options struct {
	// MTU is the network-layer MTU: the largest packet, without its link
	// header, that the wire carries. Zero means DefaultMTU. It must be at
	// least 68 (the IPv4 minimum) and at most 65535.
	MTU uint32

	// QueueLen bounds each endpoint's receive queue, in packets. A packet
	// arriving at a full queue is dropped and counted. Zero means
	// DefaultQueueLen. Unused when Sync is set.
	QueueLen int

	// Sync delivers each packet on the writer's goroutine, inside
	// WritePackets, like gVisor's link/pipe. It makes tests deterministic and
	// micro-benchmarks cheap, but cannot delay or reorder packets.
	Sync bool

	// Ethernet makes the endpoints carry Ethernet frames: they report
	// ARPHardwareEther and CapabilityResolutionRequired, and are meant to be
	// wrapped with gVisor's ethernet.New, which pushes and parses the 14-byte
	// header. Hub ports always behave as if Ethernet were set.
	Ethernet bool

	// MACA and MACB are the link addresses of the two ends made by NewPair.
	// Empty means a generated locally administered unicast address, unique
	// within the process. NewHub ignores them; see Hub.NewPort.
	MACA, MACB tcpip.LinkAddress

	// ChecksumOffload advertises TX and RX checksum offload, as a kernel
	// veth does: the sending stack skips computing transport checksums and
	// the receiving stack skips verifying them (delivered packets carry
	// RXChecksumValidated).
	ChecksumOffload bool

	// GSO advertises segmentation offload (gVisor's HostGSOSupported): a
	// sending TCP builds segments of up to 64 KiB, whatever the MTU, and the
	// wire carries them whole, as a kernel veth carries GSO packets to a
	// peer that accepts them unsegmented (GRO). Packets marked for GSO are
	// exempt from the MTU check. Requires ChecksumOffload, since GSO
	// packets carry partial transport checksums.
	GSO bool

	// Impairment degrades the wire. Its zero value is a perfect wire.
	Impairment Impairment
}

// Impairment describes how a wire mistreats packets, in the spirit of Linux
// netem. Each writing endpoint draws its decisions, in write order, from its
// own PCG generator seeded from Seed, so a single writer sees the same
// sequence of decisions on every run.
type Impairment struct {
	// Loss is the probability, in [0, 1], that a packet is dropped.
	Loss float64

	// Duplicate is the probability, in [0, 1], that a packet is delivered
	// twice. The copies share no storage.
	Duplicate float64

	// Reorder is the probability, in [0, 1], that a packet is held back and
	// delivered after the next packet (or after a short idle period if no
	// next packet comes). It needs asynchronous delivery.
	Reorder float64

	// Delay is the minimum one-way delay. It needs asynchronous delivery.
	Delay time.Duration

	// Jitter adds a uniformly random extra delay in [0, Jitter) to Delay.
	// Packets still leave in the order they entered: jitter never reorders.
	// It needs asynchronous delivery.
	Jitter time.Duration

	// Seed seeds the generators that decide loss, duplication, reordering
	// and jitter.
	Seed uint64
}

// active reports whether imp mistreats any packet.
func (imp *Impairment) active() bool {
	return imp.Loss > 0 || imp.Duplicate > 0 || imp.Reorder > 0 || imp.Delay > 0 || imp.Jitter > 0
}

// delays reports whether imp holds packets for a time.
func (imp *Impairment) delays() bool {
	return imp.Delay > 0 || imp.Jitter > 0
}

// withDefaults validates o and returns a copy with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	invalid := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case o.MTU == 0:
		o.MTU = DefaultMTU
	case o.MTU < minMTU:
		return invalid("MTU %d is below the IPv4 minimum of %d", o.MTU, minMTU)
	case o.MTU > maxMTU:
		return invalid("MTU %d is above the maximum of %d", o.MTU, maxMTU)
	}
	switch {
	case o.QueueLen == 0:
		o.QueueLen = DefaultQueueLen
	case o.QueueLen < 0:
		return invalid("QueueLen %d is negative", o.QueueLen)
	}
	for _, m := range []struct {
		name string
		addr tcpip.LinkAddress
	}{{"MACA", o.MACA}, {"MACB", o.MACB}} {
		if err := checkMAC(m.addr); err != nil {
			return invalid("%s %v", m.name, err)
		}
	}
	if o.GSO && !o.ChecksumOffload {
		return invalid("GSO needs ChecksumOffload: GSO packets carry partial checksums")
	}
	if o.MACA != "" && o.MACA == o.MACB {
		return invalid("MACA and MACB are both %s", o.MACA)
	}
	imp := &o.Impairment
	for _, p := range []struct {
		name string
		v    float64
	}{{"Loss", imp.Loss}, {"Duplicate", imp.Duplicate}, {"Reorder", imp.Reorder}} {
		// Written so that NaN fails too.
		if !(p.v >= 0 && p.v <= 1) {
			return invalid("Impairment.%s %v is not a probability in [0, 1]", p.name, p.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Delay", imp.Delay}, {"Jitter", imp.Jitter}} {
		if d.v < 0 {
			return invalid("Impairment.%s %v is negative", d.name, d.v)
		}
	}
	if o.Sync {
		switch {
		case imp.Delay > 0:
			return invalid("Impairment.Delay needs asynchronous delivery, but Sync is set")
		case imp.Jitter > 0:
			return invalid("Impairment.Jitter needs asynchronous delivery, but Sync is set")
		case imp.Reorder > 0:
			return invalid("Impairment.Reorder needs asynchronous delivery, but Sync is set")
		}
	}
	return o, nil
}

// checkMAC returns an error if addr is neither empty nor a unicast Ethernet
// address.
func checkMAC(addr tcpip.LinkAddress) error {
	switch {
	case addr == "":
		return nil
	case len(addr) != header.EthernetAddressSize:
		return fmt.Errorf("%q is %d bytes long, want %d", addr, len(addr), header.EthernetAddressSize)
	case header.IsMulticastEthernetAddress(addr):
		return fmt.Errorf("%s is not a unicast address", addr)
	}
	return nil
}
