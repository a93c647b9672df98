//go:build linux

package tun

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// FuzzFinishRx feeds the receive path's header handling any 24-byte
// virtio-net header (with and without tunnel GSO negotiated) and packet:
// it must not panic, and what it accepts with a partial checksum must come
// out with checksums that verify against the sums the header named.
// Seeds: testdata/fuzz/FuzzFinishRx and the builders below.
func FuzzFinishRx(f *testing.F) {
	add := func(h virtioNetHdr, p []byte) {
		var b [virtioNetHdrTnlSize]byte
		h.marshal(b[:])
		f.Add(b[:], p)
	}
	for _, csum := range []bool{false, true} {
		h, p, _ := tunnelGSO4(200, csum)
		add(h, p)
	}
	add(virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: 20, csumOffset: 6}, udp4([]byte("partial")))
	add(virtioNetHdr{gsoType: virtioNetHdrGSOTCPv4, gsoSize: 1448}, udp4(nil))
	f.Fuzz(func(t *testing.T, hb, p []byte) {
		if len(hb) < virtioNetHdrTnlSize {
			return
		}
		h := parseVirtioNetHdr(hb[:virtioNetHdrTnlSize])
		for _, tnl := range []bool{false, true} {
			q := append([]byte(nil), p...)
			hh := h
			e := &vnetEndpoint{tnl: tnl}
			why := e.finishRx(&hh, q)
			if why < rxOK || why >= numRxDrops {
				t.Fatalf("finishRx = %d", why)
			}
			if why != rxOK || h.gsoType&virtioNetHdrGSOUDPTunnel == 0 {
				continue
			}
			// Accepted tunnel GSO: the inner TCP checksum verifies with
			// the pseudo-header sum the field held, and so does the
			// outer UDP one when asked for.
			innerTh, outerTh := int(h.csumStart), int(h.outerTh)
			if checksum.Checksum(q[innerTh:], binary.BigEndian.Uint16(p[innerTh+16:])) != 0xffff {
				t.Fatalf("inner checksum does not verify: %+v", h)
			}
			if h.flags&virtioNetHdrFUDPTunnelCsum != 0 {
				pseudo := binary.BigEndian.Uint16(p[outerTh+6:])
				// The field's own value is part of p's sum: verify the
				// finished packet with the field's old value as the
				// pseudo-header sum.
				if checksum.Checksum(q[outerTh:], pseudo) != 0xffff {
					t.Fatalf("outer checksum does not verify: %+v", h)
				}
			}
		}
	})
}
