package bareudp

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/udptunnel/udptunnel/stack"
)

// TestEncapsulate checks what transmit writes before the UDP header: the
// label stack of the longest route or the device, with the inner TTL
// (uniform model) or LabelTTL (pipe model), nothing in IP mode, and the
// refusals for packets the device cannot carry.
func TestEncapsulate(t *testing.T) {
	route := func(c Config) Config {
		c.Routes = []Route{{Prefix: netip.MustParsePrefix("192.168.42.0/24"), Labels: []Label{500, 600}}}
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []EntryFields // nil: no tunnel header
		err  error
	}{
		{"ip", ipConfig(), nil, nil},
		{"mpls uniform TTL", mplsConfig(), []EntryFields{{Label: 1042, BottomOfStack: true, TTL: 64}}, nil},
		{"mpls pipe TTL", func() Config { c := mplsConfig(); c.LabelTTL = 5; return c }(), []EntryFields{{Label: 1042, BottomOfStack: true, TTL: 5}}, nil},
		{"mpls route", route(mplsConfig()), []EntryFields{{Label: 500, TTL: 64}, {Label: 600, BottomOfStack: true, TTL: 64}}, nil},
		{"mpls without labels", func() Config { c := mplsConfig(); c.Labels = nil; return c }(), nil, stack.ErrNoRemote},
		{"ipv4 on an ipv6 device", Config{EtherType: EtherTypeIPv6, Remote: voidRemote}, nil, stack.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, d := voidHost(t, tc.cfg)
			pkt := innerPacket()
			defer pkt.DecRef()
			out, err := d.encapsulate(pkt)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			defer out.DecRef()
			th := out.TransportHeader().Slice()[8:]
			if tc.want == nil {
				if len(th) != 0 {
					t.Errorf("IP mode wrote a %d-byte tunnel header", len(th))
				}
				return
			}
			ls, err := ParseLabelStack(th)
			if err != nil {
				t.Fatal(err)
			}
			var got []EntryFields
			for i := range ls.Depth() {
				got = append(got, ls.Entry(i).Fields())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" || len(ls) != len(th) {
				t.Errorf("label stack (-want +got):\n%s", diff)
			}
			if p := d.xmitParams(pkt); p.SrcPort < DefaultSrcPortMin || p.DstPort != MPLSPort || p.Dst != voidRemote {
				t.Errorf("outer fields %+v", p)
			}
		})
	}
}
