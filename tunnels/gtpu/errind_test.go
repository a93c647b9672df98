package gtpu_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

func TestEncodeErrorIndication(t *testing.T) {
	for _, tc := range []struct {
		self netip.Addr
		want []byte
	}{
		{netip.MustParseAddr("10.99.0.1"), []byte{
			0x36,       // version 1, PT 1, E 1, S 1 (§5.1: S set in Error Indications)
			26,         // Error Indication
			0x00, 0x14, // length 20 = 4 optional + 4 extension + 5 + 7
			0, 0, 0, 0, // TEID 0
			0, 0, // sequence number 0
			0,                // N-PDU number
			0x40,             // next extension: UDP Port
			1, 0x9c, 0x40, 0, // length 1, port 40000, no next extension
			16, 0x00, 0x00, 0x12, 0x34, // TEID Data I (TV): 0x1234
			133, 0x00, 0x04, 10, 99, 0, 1, // GTP-U Peer Address (TLV): 10.99.0.1
		}},
		{netip.MustParseAddr("fd00::1"), []byte{
			0x36, 26, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x40,
			1, 0x9c, 0x40, 0,
			16, 0x00, 0x00, 0x12, 0x34,
			133, 0x00, 0x10, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		}},
	} {
		b := make([]byte, gtpu.ErrorIndicationMaxLen)
		n := gtpu.EncodeErrorIndication(b, 0x1234, tc.self, 40000)
		if diff := cmp.Diff(tc.want, b[:n]); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.self, diff)
		}
		h, err := gtpu.Parse(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		var g layers.GTPv1U
		if err := g.DecodeFromBytes(b[:n], gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		checkAgreesWithGopacket(t, h, &g)
		if len(g.GTPExtensionHeaders) != 1 || g.GTPExtensionHeaders[0].Type != gtpu.ExtUDPPort {
			t.Errorf("gopacket extensions %+v", g.GTPExtensionHeaders)
		}
	}
}

// TestErrorIndication: with ErrorIndications on, a G-PDU for an unknown
// TEID reaches the control plane and draws an Error Indication to the
// sender's GTP-U port, which its socket hands to its own control plane;
// a burst is rate-limited.
func TestErrorIndication(t *testing.T) {
	hs := pair(t, true, memlink.Options{Sync: true}, nil)
	// Replace host 0's socket with one that sends Error Indications.
	hs[0].sock.Close()
	sock, err := gtpu.OpenSocket(hs[0].st, gtpu.SocketConfig{ErrorIndications: true, ErrorIndicationRate: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	bad := gpduMsg(0x1234, ipv4From(ue4, gw4))
	to := netip.AddrPortFrom(hs[0].outer, gtpu.DefaultPort)
	if err := hs[1].sock.Tunnel().SendDatagram(bad, to); err != nil {
		t.Fatal(err)
	}
	pc := hs[1].sock.Tunnel().PacketConn()
	buf := make([]byte, 200)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, gtpu.ErrorIndicationMaxLen)
	want = want[:gtpu.EncodeErrorIndication(want, 0x1234, hs[0].outer, gtpu.DefaultPort)]
	if diff := cmp.Diff(want, buf[:n]); diff != "" {
		t.Errorf("error indication from %v (-want +got):\n%s", from, diff)
	}
	// The control plane of host 0 saw the G-PDU.
	cp := sock.Tunnel().PacketConn()
	cp.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := cp.ReadFrom(buf); err != nil || !cmp.Equal(buf[:n], bad) {
		t.Errorf("control plane read % x, %v", buf[:n], err)
	}

	const burst = 30
	start := time.Now()
	for range burst {
		if err := hs[1].sock.Tunnel().SendDatagram(bad, to); err != nil {
			t.Fatal(err)
		}
	}
	s := sock.Stats()
	// One sent before the burst, then a bucket of 5 plus its refill at
	// 5/s while the burst lasted.
	allowed := 1 + 5 + uint64(time.Since(start).Seconds()*5) + 1
	if s.ErrorIndications+s.ErrorIndicationsLimited != burst+1 || s.ErrorIndications > allowed || s.ErrorIndications < 5 {
		t.Errorf("after a burst of %d at 5/s: %+v", burst, s)
	}
	if s.PassedToUDP != burst+1 {
		t.Errorf("passed %d to the control plane, want %d", s.PassedToUDP, burst+1)
	}
	if d := sock.Tunnel().Counters().Stats().Dropped(stack.DropQueueFull); d != 0 {
		t.Errorf("control plane queue dropped %d", d)
	}
}
