package capture_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// pair builds two stacks on a memlink wire (10.7.0.1, 10.7.0.2; Ethernet
// when eth), with host a's end wrapped by capture.New writing to w.
func pair(t *testing.T, w io.Writer, eth bool) (a, b *stack.Stack, c *capture.Endpoint) {
	t.Helper()
	wa, wb, err := memlink.NewPair(memlink.Options{Ethernet: eth})
	if err != nil {
		t.Fatal(err)
	}
	lt := capture.LinkRaw
	if eth {
		lt = capture.LinkEthernet
	}
	c, err = capture.New(wa, w, capture.Options{LinkType: lt})
	if err != nil {
		t.Fatal(err)
	}
	var epA, epB stack.LinkEndpoint = c, wb
	if eth {
		epA, epB = ethernet.New(c), ethernet.New(wb)
	}
	for i, ep := range []stack.LinkEndpoint{epA, epB} {
		st := stack.New(stack.Options{})
		t.Cleanup(st.Close)
		nic, err := st.AddNIC(ep, stack.NICOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddAddress(nic, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, 0, byte(i + 1)}), 24)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			a = st
		} else {
			b = st
		}
	}
	return a, b, c
}

func TestCapture(t *testing.T) {
	for _, eth := range []bool{false, true} {
		name := map[bool]string{false: "raw", true: "ethernet"}[eth]
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			a, _, c := pair(t, &buf, eth)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const pings = 3
			for i := range pings {
				if _, err := a.Ping(ctx, netip.MustParseAddr("10.7.0.2"), uint16(i+1), 100); err != nil {
					t.Fatal(err)
				}
			}
			r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]layers.LinkType{false: layers.LinkTypeRaw, true: layers.LinkTypeEthernet}[eth]
			if r.LinkType() != want {
				t.Fatalf("link type %v, want %v", r.LinkType(), want)
			}
			var requests, replies, arps, n int
			for {
				data, ci, err := r.ReadPacketData()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
				if ci.CaptureLength != ci.Length || len(data) != ci.Length {
					t.Errorf("packet %d: captured %d of %d bytes", n, ci.CaptureLength, ci.Length)
				}
				p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
				if p.Layer(layers.LayerTypeARP) != nil {
					arps++
					continue
				}
				icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if icmp == nil {
					t.Errorf("packet %d is neither ICMP nor ARP: %v", n, p)
					continue
				}
				if len(icmp.Payload) != 100 {
					t.Errorf("packet %d: ICMP payload %d bytes, want 100", n, len(icmp.Payload))
				}
				switch icmp.TypeCode.Type() {
				case layers.ICMPv4TypeEchoRequest:
					requests++
				case layers.ICMPv4TypeEchoReply:
					replies++
				}
			}
			if requests != pings || replies != pings {
				t.Errorf("captured %d echo requests and %d replies, want %d of each", requests, replies, pings)
			}
			if eth && arps < 2 {
				t.Errorf("captured %d ARP packets on an Ethernet wire, want the request and the reply", arps)
			}
			if c.Packets() != uint64(n) || c.Err() != nil {
				t.Errorf("Packets() = %d (file has %d), Err() = %v", c.Packets(), n, c.Err())
			}
		})
	}
}

// failAfter fails every write once n bytes have been written.
type failAfter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failAfter) Write(b []byte) (int, error) {
	if f.n < len(b) {
		return 0, errDiskFull
	}
	f.n -= len(b)
	return len(b), nil
}

// TestCaptureWriterFails checks that a failing writer stops the capture,
// reports why, and leaves the traffic alone.
func TestCaptureWriterFails(t *testing.T) {
	a, _, c := pair(t, &failAfter{n: 24 + 16 + 128}, false) // file header and about one packet
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := a.Ping(ctx, netip.MustParseAddr("10.7.0.2"), uint16(i+1), 100); err != nil {
			t.Fatalf("ping %d with a failed capture: %v", i, err)
		}
	}
	// pcapgo flattens the writer's error into its message.
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), errDiskFull.Error()) {
		t.Errorf("Err() = %v, want the writer's error", err)
	}
	if c.Packets() != 1 {
		t.Errorf("Packets() = %d, want 1 (the one that fit)", c.Packets())
	}
}

func TestNewErrors(t *testing.T) {
	wa, _, err := memlink.NewPair(memlink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.New(wa, io.Discard, capture.Options{}); err == nil {
		t.Error("New without a link type succeeded")
	}
	if _, err := capture.New(wa, &failAfter{}, capture.Options{LinkType: capture.LinkRaw}); !errors.Is(err, errDiskFull) {
		t.Errorf("New with a failing writer: %v, want the writer's error", err)
	}
}

// TestInnerCapture captures the tunnel device of an L2 (VXLAN) and an L3
// (GUE) overlay through stack.Options.WrapDevice: the L2 capture must hold
// Ethernet frames, the L3 one bare IP packets, both with the inner echoes.
func TestInnerCapture(t *testing.T) {
	for _, tc := range []struct {
		proto string
		link  layers.LinkType
	}{{"vxlan", layers.LinkTypeEthernet}, {"gue", layers.LinkTypeRaw}} {
		t.Run(tc.proto, func(t *testing.T) {
			tunnel, err := e2e.Protocol(tc.proto)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tunnel, InnerCapture: &buf})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := e2e.Ping(ctx, o.A.Stack, o.B.Inner4, 2, time.Second)
			o.Close()
			if err != nil || r.Received != 2 {
				t.Fatalf("ping: %v %v", r, err)
			}
			rd, err := pcapgo.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if rd.LinkType() != tc.link {
				t.Fatalf("link type %v, want %v", rd.LinkType(), tc.link)
			}
			echoes := 0
			for {
				data, _, err := rd.ReadPacketData()
				if err != nil {
					break
				}
				p := gopacket.NewPacket(data, rd.LinkType(), gopacket.Default)
				if (p.Layer(layers.LayerTypeEthernet) != nil) != (tc.link == layers.LinkTypeEthernet) {
					t.Errorf("packet with Ethernet=%v in a %v capture", p.Layer(layers.LayerTypeEthernet) != nil, tc.link)
				}
				if p.Layer(layers.LayerTypeICMPv4) != nil {
					echoes++
				}
			}
			if echoes != 4 {
				t.Errorf("captured %d ICMP echoes, want 2 requests and 2 replies", echoes)
			}
		})
	}
}
