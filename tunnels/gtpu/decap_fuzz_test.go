package gtpu

import (
	"fmt"
	"testing"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

// FuzzDecap feeds arbitrary UDP payloads to a GTP-U socket with a device
// (TEID 42, UE 192.168.42.2 and fd42::2, inner stack attached) and checks
// that nothing panics and that every datagram is accounted for exactly
// once: dropped by the socket or the device with a reason, delivered by the
// device, passed to the control plane, answered (Echo) or consumed as an
// End Marker. The file seeds in testdata/fuzz/FuzzDecap are named for what
// they exercise.
func FuzzDecap(f *testing.F) {
	st, s, d := voidHost(f)
	sockEP := tunneltest.TunnelEndpoint(f, st)

	f.Add([]byte{})                                                        // empty datagram: truncated
	f.Add(gpdu(42, ue4, 8, false))                                         // a valid G-PDU from the UE
	f.Add(gpdu(42, ue4, 8, true))                                          // with a PDU Session Container
	f.Add(gpdu(43, ue4, 8, false))                                         // unknown TEID: to the control plane
	f.Add(gpdu(42, self4, 8, false))                                       // inner source not the UE: policy
	f.Add(gpdu(42, ue4, 8, false)[:20])                                    // inner packet cut, Length says more
	f.Add([]byte{0x32, 1, 0, 4, 0, 0, 0, 0, 0, 7, 0, 0})                   // Echo Request
	f.Add([]byte{0x30, 1, 0, 0, 0, 0, 0, 0})                               // Echo Request without S
	f.Add([]byte{0x30, 254, 0, 0, 0, 0, 0, 42})                            // End Marker
	f.Add([]byte{0x30, 26, 0, 0, 0, 0, 0, 0})                              // Error Indication: control plane
	f.Add([]byte{0x34, 255, 0, 8, 0, 0, 0, 42, 0, 0, 0, 0xff, 1, 0, 0, 0}) // unknown comprehension-required extension

	accounted := func() uint64 {
		ss, ds, gs := s.Tunnel().Counters().Stats(), d.Counters().Stats(), s.Stats()
		return ss.TotalDrops() - ss.Dropped(stack.DropQueueFull) + ds.RxPackets + ds.TotalDrops() +
			gs.PassedToUDP + gs.EchoResponses + gs.EchoErrors + gs.EndMarkers
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		tunneltest.AccountedOnce(t, sockEP, datagram4(payload), accounted, func() string {
			return fmt.Sprintf("payload % x; socket %v, device %v, %+v", payload, s.Tunnel().Counters().Stats(), d.Counters().Stats(), s.Stats())
		})
	})
}
