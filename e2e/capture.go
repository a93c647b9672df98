package e2e

import (
	"bytes"
	"io"
	"sync"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"
	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/stack"
)

// Capture is a packet capture kept in memory, decoded on demand with
// gopacket: what tcpdump -w followed by a dissector gives. Declare one with
// Topology.Capture, or make one with NewCapture around any link endpoint.
type Capture struct {
	buf      lockedBuffer
	ep       *capture.Endpoint
	linkType capture.LinkType
}

// NewCapture wraps lower (a link endpoint whose packets start with
// linkType's header) in a capture: attach the returned endpoint to the
// stack in lower's place.
func NewCapture(lower stack.LinkEndpoint, linkType capture.LinkType) (*Capture, stack.LinkEndpoint, error) {
	c := &Capture{linkType: linkType}
	ep, err := capture.New(lower, &c.buf, capture.Options{LinkType: linkType})
	if err != nil {
		return nil, nil, err
	}
	c.ep = ep
	return c, ep, nil
}

// Packets decodes every packet captured so far (gopacket.Default: eagerly,
// on copies). A capture taken while traffic flows ends at the last
// complete packet.
func (c *Capture) Packets() []gopacket.Packet {
	r, err := pcapgo.NewReader(bytes.NewReader(c.Pcap()))
	if err != nil {
		return nil // nothing captured yet: not even the file header
	}
	var pkts []gopacket.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			return pkts // io.EOF, or a record still being written
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		md := p.Metadata()
		md.CaptureInfo = ci
		pkts = append(pkts, p)
	}
}

// Pcap returns a copy of the capture as a pcap file, for tshark or a file
// kept after a failed test.
func (c *Capture) Pcap() []byte { return c.buf.bytes() }

// WriteTo writes the capture as a pcap file to w.
func (c *Capture) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(c.Pcap())
	return int64(n), err
}

// Err returns why the capture stopped, if it did (see capture.Endpoint.Err).
func (c *Capture) Err() error {
	if c.ep == nil {
		return nil
	}
	return c.ep.Err()
}

// lockedBuffer is a bytes.Buffer that the capture endpoint writes while
// Packets reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
