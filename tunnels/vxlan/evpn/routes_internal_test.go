package evpn

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// testSpeaker is a speaker with a configuration and no GoBGP: enough to
// build routes.
func testSpeaker(t testing.TB) (*Speaker, *instance) {
	t.Helper()
	cfg := Config{ASN: 65000, VTEP: netip.MustParseAddr("10.0.0.1"), Neighbors: []Neighbor{{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65000}}}.defaults()
	in, err := newInstance(&cfg, 100, BindConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &Speaker{cfg: cfg}, in
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// attr returns p's attribute of type typ, serialized.
func attr(t *testing.T, p *apiutil.Path, typ bgp.BGPAttrType) []byte {
	t.Helper()
	for _, a := range p.Attrs {
		if a.GetType() == typ {
			b, err := a.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no attribute of type %d", typ)
	return nil
}

// TestRouteWire checks the bytes of the routes we originate, field by
// field against RFC 7432 §7.2/§7.3, RFC 6514 §5 (PMSI tunnel), RFC 8365
// §5.1.3 (VNI in the label field), RFC 4360 (route target), RFC 9012
// (encapsulation) and RFC 7432 §7.7 (MAC mobility); and that a
// withdrawal carries the highest sequence number GoBGP could hold.
func TestRouteWire(t *testing.T) {
	s, in := testSpeaker(t)
	rd := "0001 0a000001 0064" // RD type 1: 10.0.0.1 (router ID) : 100 (VNI)

	imet, err := s.inclusivePath(in)
	if err != nil {
		t.Fatal(err)
	}
	nlri, _ := imet.Nlri.Serialize()
	want := unhex("03 11" + // route type 3, length 17
		rd +
		"00000000" + // Ethernet tag 0 (VLAN-based service)
		"20 0a000001") // originator: 32 bits, 10.0.0.1
	if !bytes.Equal(nlri, want) {
		t.Errorf("type 3 NLRI\n got %x\nwant %x", nlri, want)
	}
	want = unhex("c0 16 09" + // optional transitive, PMSI_TUNNEL (22), length 9
		"00 06" + // no leaf info required; ingress replication
		"000064" + // label: VNI 100 as a raw 24-bit value (RFC 8365 §5.1.3)
		"0a000001") // tunnel endpoint: the VTEP
	if got := attr(t, imet, bgp.BGP_ATTR_TYPE_PMSI_TUNNEL); !bytes.Equal(got, want) {
		t.Errorf("PMSI tunnel\n got %x\nwant %x", got, want)
	}
	ecs := unhex("c0 10 10" + // optional transitive, EXTENDED COMMUNITIES (16), length 16
		"0002 fde8 00000064" + // route target, 2-octet AS 65000 : 100
		"030c 0000 00000008") // encapsulation: tunnel type 8, VXLAN
	if got := attr(t, imet, bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES); !bytes.Equal(got, ecs) {
		t.Errorf("extended communities\n got %x\nwant %x", got, ecs)
	}

	mac := vxlan.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x42}
	for _, tc := range []struct {
		name string
		ip   netip.Addr
		seq  uint32
		want string
	}{
		{"MAC", netip.Addr{}, 0, "02 21" + rd + // route type 2, length 33
			"00000000000000000000" + // ESI 0: single-homed
			"00000000" + // Ethernet tag 0
			"30 020000000042" + // MAC: 48 bits
			"00" + // no IP
			"000064"}, // label 1: VNI 100
		{"MAC+IPv4", netip.MustParseAddr("192.168.100.1"), 0, "02 25" + rd +
			"00000000000000000000" + "00000000" + "30 020000000042" +
			"20 c0a86401" + // IP: 32 bits
			"000064"},
		{"MAC+IPv6 moved", netip.MustParseAddr("fd00::1"), 7, "02 31" + rd +
			"00000000000000000000" + "00000000" + "30 020000000042" +
			"80 fd000000000000000000000000000001" + // IP: 128 bits
			"000064"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.macIPPath(in, mac, tc.ip, tc.seq)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := p.Nlri.Serialize()
			if want := unhex(tc.want); !bytes.Equal(got, want) {
				t.Errorf("type 2 NLRI\n got %x\nwant %x", got, want)
			}
			// MAC mobility: not sticky, the sequence number (also 0).
			want := unhex("c0 10 18" + "0002 fde8 00000064" + "030c 0000 00000008" +
				"0600 00 00" + fmt.Sprintf("%08x", tc.seq))
			if got := attr(t, p, bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES); !bytes.Equal(got, want) {
				t.Errorf("extended communities\n got %x\nwant %x", got, want)
			}
			w := forWithdrawal(p)
			if got := attr(t, w, bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES); !bytes.Equal(got, unhex("c0 10 18"+"0002 fde8 00000064"+"030c 0000 00000008"+"0600 0000 ffffffff")) {
				t.Errorf("withdrawal's extended communities %x", got)
			}
			if got := attr(t, p, bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES); !bytes.Equal(got, want) {
				t.Errorf("forWithdrawal changed the advertised path: %x", got)
			}
			// And back: what we send is what we read.
			p.PeerAddress = netip.MustParseAddr("10.0.0.2")
			r, err := parseRoute(p)
			if err != nil {
				t.Fatal(err)
			}
			if r.typ != 2 || r.mac != mac || r.ip != tc.ip || r.vni != 100 || r.seq != tc.seq ||
				r.nexthop != s.cfg.VTEP || len(r.rts) != 1 || r.rts[0] != "65000:100" {
				t.Errorf("parsed back: %+v", r)
			}
		})
	}
}

// update serializes p as a BGP UPDATE message (MP_REACH carries the NLRI).
func update(t testing.TB, p *apiutil.Path) []byte {
	t.Helper()
	b, err := bgp.NewBGPUpdateMessage(nil, p.Attrs, nil).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pathsOf decodes a BGP UPDATE message into the paths GoBGP would hand to
// the watch: one per NLRI of MP_REACH, with every attribute.
func pathsOf(b []byte) []*apiutil.Path {
	m, err := bgp.ParseBGPMessage(b)
	if err != nil {
		return nil
	}
	u, ok := m.Body.(*bgp.BGPUpdate)
	if !ok {
		return nil
	}
	var ps []*apiutil.Path
	for _, a := range u.PathAttributes {
		if mp, ok := a.(*bgp.PathAttributeMpReachNLRI); ok {
			for _, n := range mp.Value {
				ps = append(ps, &apiutil.Path{Family: bgp.RF_EVPN, Nlri: n.NLRI, Attrs: u.PathAttributes,
					PeerAddress: netip.MustParseAddr("10.0.0.2")})
			}
		}
	}
	return ps
}

// FuzzRoute feeds any bytes, as a BGP UPDATE, through GoBGP's decoder and
// our route parser: nothing may panic, and a route that parses has the
// invariants the binding relies on. The seeds (testdata/fuzz/FuzzRoute)
// are our own routes; f.Add adds them again from the code.
func FuzzRoute(f *testing.F) {
	s, in := testSpeaker(f)
	imet, _ := s.inclusivePath(in)
	f.Add(update(f, imet)) // type 3 with PMSI
	for _, ip := range []netip.Addr{{}, netip.MustParseAddr("192.168.100.1"), netip.MustParseAddr("fd00::1")} {
		p, _ := s.macIPPath(in, vxlan.MAC{2, 0, 0, 0, 0, 0x42}, ip, 3)
		f.Add(update(f, p)) // type 2, MAC, MAC+IPv4, MAC+IPv6, sequence 3
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range pathsOf(b) {
			r, err := parseRoute(p)
			if err != nil {
				continue
			}
			switch r.typ {
			case typeMACIP:
				if r.mac.IsMulticast() || r.mac.IsZero() || !r.nexthop.IsValid() || !r.vni.Valid() {
					t.Fatalf("type 2 route accepted with %+v", r)
				}
			case typeInclusive:
				if !r.ingress || !r.origin.IsValid() || !r.vni.Valid() {
					t.Fatalf("type 3 route accepted with %+v", r)
				}
			default:
				t.Fatalf("route of type %d accepted", r.typ)
			}
		}
	})
}
