package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// dissector says how Wireshark decodes one protocol's underlay traffic.
type dissector struct {
	// args are extra tshark arguments: "decode as" for ports Wireshark
	// does not know, preferences.
	args []string
	// id is the field holding the tunnel identifier and want its value
	// on every packet ("" = any non-empty value).
	id, want string
	// skip, when set, is why tshark cannot check this protocol.
	skip string
}

// dissectors covers every registered protocol; TestProtocolsTshark fails
// for a protocol missing here, so that a new protocol gets checked.
var dissectors = map[string]dissector{
	"vxlan":     {id: "vxlan.vni", want: "42"},
	"geneve":    {id: "geneve.vni", want: "0x00002a"},
	"geneve-l3": {id: "geneve.vni", want: "0x00002a"},
	// GRE-in-UDP (RFC 8086) on its IANA port 4754, keyed with the VNI.
	"fou": {id: "gre.key", want: "0x0000002a"},
	"gue": {skip: "Wireshark has no GUE dissector; tunnels/fou checks GUE against gVisor's header.GUE and hand-assembled golden packets"},
	// Host a receives on TEID 42 and sends to 43; the field shows both.
	"gtpu": {id: "gtp.teid"},
	// IP-in-UDP has no header and no port of its own: Wireshark takes
	// 6635 for MPLS, so the payload is named IP (the dissector hands IPv6 on).
	"bareudp": {id: "udp.dstport", want: "6635", args: []string{"-d", "udp.port==6635,ip"}},
	"mplsudp": {id: "mpls.label", want: "1042"},
	// L2TPv3's cookie size, sublayer and pseudowire type are per-session
	// configuration that Wireshark learns from the control connection;
	// without one they are preferences, and the pseudowire type of a
	// session it never saw set up (0) is decoded as Ethernet.
	"l2tp": {id: "l2tp.sid", want: "0x0000002a", args: []string{"-o", "l2tp.cookie_size:4 Byte Cookie",
		"-o", "l2tp.l2_specific:Default L2-Specific", "-d", "l2tp.pw_type==0,eth"}},
}

// TestProtocolsTshark captures each protocol's underlay while host a pings
// b over inner IPv4 and IPv6, over an IPv4 and an IPv6 underlay, and has
// Wireshark's dissectors decode the capture: every datagram must decode as
// the protocol, with the overlay's tunnel identifier, a verified outer UDP
// checksum, nothing malformed, and the inner echo requests and replies.
func TestProtocolsTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("needs tshark (Wireshark), not found in PATH")
	}
	for _, name := range e2e.Protocols() {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/ipv6-underlay=%v", name, v6), func(t *testing.T) {
				d, ok := dissectors[name]
				if !ok {
					t.Fatalf("no tshark dissector entry for protocol %q: add one to dissectors", name)
				}
				if d.skip != "" {
					t.Skip(d.skip)
				}
				tshark(t, name, d, v6)
			})
		}
	}
}

func tshark(t *testing.T, name string, d dissector, v6 bool) {
	tunnel, err := e2e.Protocol(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := e2e.NewOverlay(e2e.OverlayConfig{Tunnel: tunnel, IPv6Underlay: v6, Capture: f})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const pings = 2
	for _, dst := range []netip.Addr{o.B.Inner4, o.B.Inner6} {
		r, err := e2e.Ping(ctx, o.A.Stack, dst, pings, time.Second)
		if err != nil || r.Received != pings {
			t.Fatalf("ping %s: %v %v", dst, r, err)
		}
	}
	o.Close() // every packet is in the file
	fields := []string{d.id, "icmp.type", "icmpv6.type", "udp.checksum.status", "_ws.malformed"}
	args := append([]string{"-r", path, "-o", "udp.check_checksum:TRUE", "-Y", "udp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l"}, d.args...)
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command("tshark", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	echo := map[string]int{}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for _, line := range lines {
		r := strings.Split(line, "\t")
		if len(r) != len(fields) {
			t.Errorf("tshark row %q: want %d fields", line, len(fields))
			continue
		}
		id, icmp4, icmp6, csum, malformed := r[0], r[1], r[2], r[3], r[4]
		if id == "" || (d.want != "" && id != d.want) {
			t.Errorf("packet with %s %q, want %q: %q", d.id, id, d.want, line)
		}
		if csum != "1" {
			t.Errorf("packet whose outer UDP checksum Wireshark did not verify (status %q): %q", csum, line)
		}
		if malformed != "" {
			t.Errorf("packet Wireshark calls malformed: %q", line)
		}
		for _, typ := range []string{icmp4, icmp6} {
			if slices.Contains([]string{"8", "0", "128", "129"}, typ) {
				echo[typ]++
			}
		}
	}
	want := map[string]int{"8": pings, "0": pings, "128": pings, "129": pings}
	if fmt.Sprint(echo) != fmt.Sprint(want) {
		t.Errorf("inner echo requests and replies by ICMP type: got %v, want %v\n%s", echo, want, out)
	}
	t.Logf("tshark decoded %d datagrams (%s)", len(lines), strings.Join(fields, ", "))
}
