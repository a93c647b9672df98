// Package capture records the packets a link endpoint sends and receives as
// a pcap stream, for Wireshark and tshark: the analog of tcpdump on a
// kernel interface.
//
// An Endpoint wraps any gVisor link endpoint (a memlink wire, a TUN device, a
// tunnel device's lower) and is attached to the stack in its place. It writes
// each packet whole, link header included: wrap the raw endpoint, below
// gVisor's Ethernet wrapper, to keep L2 headers (LinkEthernet); an endpoint
// that carries bare IP packets is captured as LinkRaw.
//
// gVisor's own link/sniffer does the same but logs every packet through
// gVisor's global logger unless a package variable is cleared, and panics
// when its writer fails; this package never logs, and a failing writer only
// stops the capture (Err says why) while traffic goes on.
package capture

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// LinkType is the pcap link type of a capture.
type LinkType = layers.LinkType

// Link types for New.
const (
	// LinkRaw: each packet starts with an IPv4 or IPv6 header.
	LinkRaw LinkType = layers.LinkTypeRaw
	// LinkEthernet: each packet starts with an Ethernet header.
	LinkEthernet LinkType = layers.LinkTypeEthernet
)

// DefaultSnapLen is the snapshot length of a capture when none is given:
// the largest IP packet, so that nothing is cut.
const DefaultSnapLen = 65535 + 14

// Options configure a capture.
type Options struct {
	// LinkType says what the wrapped endpoint's packets start with
	// (LinkRaw or LinkEthernet); it is written in the pcap header.
	LinkType LinkType
	// SnapLen cuts packets longer than this (0 = DefaultSnapLen).
	SnapLen uint32
}

// Endpoint is a link endpoint that records the packets of the endpoint it
// wraps. It is safe for concurrent use.
type Endpoint struct {
	nested.Endpoint

	snapLen int

	mu      sync.Mutex
	w       *pcapgo.Writer // nil once the writer has failed
	err     error
	packets uint64
	buf     []byte
}

var _ gstack.LinkEndpoint = (*Endpoint)(nil)
var _ gstack.NetworkDispatcher = (*Endpoint)(nil)

// New wraps lower so that every packet it sends or receives is written to
// w in pcap format (microsecond timestamps). It writes the pcap file header
// at once and fails if that fails.
func New(lower gstack.LinkEndpoint, w io.Writer, opts Options) (*Endpoint, error) {
	if opts.LinkType != LinkRaw && opts.LinkType != LinkEthernet {
		return nil, fmt.Errorf("capture: Options.LinkType %v: must be LinkRaw or LinkEthernet", opts.LinkType)
	}
	if opts.SnapLen == 0 {
		opts.SnapLen = DefaultSnapLen
	}
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(opts.SnapLen, opts.LinkType); err != nil {
		return nil, fmt.Errorf("capture: pcap header: %w", err)
	}
	e := &Endpoint{snapLen: int(opts.SnapLen), w: pw}
	e.Endpoint.Init(lower, e)
	return e, nil
}

// DeliverNetworkPacket records a received packet and passes it up.
func (e *Endpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	e.record(pkt)
	e.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// WritePackets records the packets being sent and passes them down.
func (e *Endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		e.record(pkt)
	}
	return e.Endpoint.WritePackets(pkts)
}

// record writes pkt, headers and data, as one pcap record.
func (e *Endpoint) record(pkt *gstack.PacketBuffer) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return
	}
	e.buf = e.buf[:0]
	for _, s := range pkt.AsSlices() {
		e.buf = append(e.buf, s...)
	}
	b := e.buf
	if len(b) > e.snapLen {
		b = b[:e.snapLen]
	}
	ci := gopacket.CaptureInfo{Timestamp: now, CaptureLength: len(b), Length: len(e.buf)}
	if err := e.w.WritePacket(ci, b); err != nil {
		e.err = fmt.Errorf("capture: after %d packets: %w", e.packets, err)
		e.w = nil
		return
	}
	e.packets++
}

// Packets returns the number of packets recorded.
func (e *Endpoint) Packets() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.packets
}

// Err returns the error that stopped the capture, or nil while it runs.
func (e *Endpoint) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
