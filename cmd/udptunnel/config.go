package main

// The configuration file of `udptunnel run` and `udptunnel check`: YAML,
// decoded strictly (an unknown key is an error naming the key and its
// line), then checked value by value (an error names the key path and its
// line, and nothing starts). Keys are snake_case and mirror the quick
// mode's flags and the `ip link` options of each protocol.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of a run.
type Config struct {
	// Log configures the structured log (log/slog).
	Log LogConfig `yaml:"log"`
	// Admin is the admin HTTP listener: /metrics and /healthz.
	Admin AdminConfig `yaml:"admin"`
	// Underlay is how outer packets reach the host.
	Underlay UnderlayConfig `yaml:"underlay"`
	// Interfaces are the tunnel interfaces, each with its inner addresses.
	Interfaces []InterfaceConfig `yaml:"interfaces"`
	// SOCKS5 is the SOCKS5 listener for host applications (absent = none).
	SOCKS5 *SOCKS5Config `yaml:"socks5"`
	// HTTPConnect is the HTTP CONNECT proxy listener (absent = none).
	HTTPConnect *HTTPConnectConfig `yaml:"http_connect"`
	// Forwards are static TCP and UDP port forwards.
	Forwards []ForwardConfig `yaml:"forwards"`
	// Pcap captures packets to pcap files.
	Pcap PcapConfig `yaml:"pcap"`
	// InnerTUN is a host TUN device routed into the overlay (absent =
	// none; needs CAP_NET_ADMIN).
	InnerTUN *InnerTUNConfig `yaml:"inner_tun"`
	// ShutdownTimeout bounds how long in-flight connections may drain
	// on SIGINT/SIGTERM (default 5s).
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// EVPN fills the VXLAN interfaces' tables from BGP EVPN (absent =
	// none): every vxlan interface is bound, with learning off.
	EVPN *EVPNConfig `yaml:"evpn"`
}

// EVPNConfig is the BGP EVPN control plane (package tunnels/vxlan/evpn).
type EVPNConfig struct {
	// ASN is the local AS number.
	ASN uint32 `yaml:"asn"`
	// RouterID is the BGP identifier (default: the underlay address, if
	// IPv4).
	RouterID string `yaml:"router_id"`
	// ListenPort accepts BGP sessions on this TCP port; 0 (default)
	// only connects out, which needs no privileges.
	ListenPort uint16 `yaml:"listen_port"`
	// ListenAddresses restrict the listener (default: every address).
	ListenAddresses []string `yaml:"listen_addresses"`
	// HoldTime is the BGP hold time (default 90s).
	HoldTime Duration `yaml:"hold_time"`
	// ConnectRetry is the interval between connection attempts
	// (default 5s).
	ConnectRetry Duration `yaml:"connect_retry"`
	// Neighbors are the BGP peers.
	Neighbors []EVPNNeighborConfig `yaml:"neighbors"`
}

// EVPNNeighborConfig is one BGP peer.
type EVPNNeighborConfig struct {
	// Address is the peer's address.
	Address string `yaml:"address"`
	// ASN is the peer's AS number: the same as evpn.asn for iBGP.
	ASN uint32 `yaml:"asn"`
	// Port is the peer's BGP port (default 179).
	Port uint16 `yaml:"port"`
	// LocalAddress is the session's source address.
	LocalAddress string `yaml:"local_address"`
	// Passive waits for the peer to connect (needs evpn.listen_port).
	Passive bool `yaml:"passive"`
	// MultihopTTL allows an eBGP peer that is not directly connected.
	MultihopTTL uint8 `yaml:"multihop_ttl"`
	// Password turns on TCP MD5 signatures.
	Password string `yaml:"password"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is the address of /metrics and /healthz; empty means none.
	Listen string `yaml:"listen"`
}

// UnderlayConfig says how outer packets reach the host.
type UnderlayConfig struct {
	// Type is hostudp (default: ordinary host UDP sockets, no privileges)
	// or tun (a host TUN device: root).
	Type string `yaml:"type"`
	// Address is the underlay address of this end: the host's address
	// that peers send to (hostudp), or the stack's address on the TUN
	// (tun, a prefix). For hostudp it defaults to the host address that
	// routes to the first interface's remote.
	Address string `yaml:"address"`
	// Bind is the host address hostudp sockets bind (default: Address).
	Bind string `yaml:"bind"`
	// MTU is the underlay MTU (default 1500).
	MTU uint32 `yaml:"mtu"`
	// Name is the TUN device's name (tun; default "udptunnel0").
	Name string `yaml:"name"`
	// Gateway is the next hop through the TUN for remotes outside its
	// prefix (tun).
	Gateway string `yaml:"gateway"`
	// Offload turns on the hostudp underlay's inner-offload mode: the
	// VXLAN devices hand it 64 KiB TCP segments, which it cuts into UDP
	// GSO trains, and received runs of one inner TCP flow are merged into
	// one packet (hostudp.Config.InnerOffset). It needs every interface
	// to be vxlan, no inner_tun (merged segments are larger than its MTU)
	// and no pcap.outer (it would record 64 KiB packets).
	Offload bool `yaml:"offload"`
}

// InterfaceConfig is one tunnel interface.
type InterfaceConfig struct {
	// Name is the interface's name (default from the protocol and ID).
	Name string `yaml:"name"`
	// Type is the protocol: vxlan, geneve, l2tp, gtpu, fou, gue, bareudp
	// or mplsudp.
	Type string `yaml:"type"`
	// ID is the tunnel identifier: VNI (vxlan, geneve), session ID
	// (l2tp), GRE key (fou), MPLS label (mplsudp).
	ID *uint32 `yaml:"id"`
	// Remote is the peer's underlay address (for vxlan, the first of
	// Remotes).
	Remote string `yaml:"remote"`
	// Remotes are more VXLAN flood-list remotes.
	Remotes []string `yaml:"remotes"`
	// Local is the outer source address (default: the underlay address).
	Local string `yaml:"local"`
	// Port is the UDP port, on both ends (default: the protocol's).
	Port uint16 `yaml:"port"`
	// MTU is the inner MTU (default: derived from the underlay MTU).
	MTU uint32 `yaml:"mtu"`
	// TTL and TOS of outer packets.
	TTL uint8 `yaml:"ttl"`
	TOS uint8 `yaml:"tos"`
	// DF sets don't-fragment on outer IPv4 packets.
	DF bool `yaml:"df"`
	// ZeroChecksum sends outer UDP datagrams without a checksum.
	ZeroChecksum bool `yaml:"zero_checksum"`
	// Addresses are the inner addresses, as prefixes (192.168.42.1/24).
	Addresses []string `yaml:"addresses"`
	// Routes are inner routes through this interface.
	Routes []RouteConfig `yaml:"routes"`

	// Protocol-specific settings.
	VXLAN   *VXLANConfig   `yaml:"vxlan"`
	Geneve  *GeneveConfig  `yaml:"geneve"`
	L2TP    *L2TPConfig    `yaml:"l2tp"`
	GTPU    *GTPUConfig    `yaml:"gtpu"`
	FOU     *FOUConfig     `yaml:"fou"`
	BareUDP *BareUDPConfig `yaml:"bareudp"`
}

// RouteConfig is an inner route.
type RouteConfig struct {
	// To is the destination prefix.
	To string `yaml:"to"`
	// Via is the next hop (optional).
	Via string `yaml:"via"`
}

// VXLANConfig holds VXLAN's own settings.
type VXLANConfig struct {
	// Learning learns remote MACs from received frames.
	Learning bool `yaml:"learning"`
	// Ageing is how long learned entries live (default 300s).
	Ageing Duration `yaml:"ageing"`
	// MaxEntries caps the FDB (0 = no cap).
	MaxEntries int `yaml:"max_entries"`
	// SrcPortMin and SrcPortMax bound the flow-hashed source port.
	SrcPortMin uint16 `yaml:"src_port_min"`
	SrcPortMax uint16 `yaml:"src_port_max"`
	// FDB are static forwarding entries.
	FDB []FDBEntryConfig `yaml:"fdb"`
	// Proxy answers ARP and neighbour solicitations for addresses in the
	// proxy table locally (ARP suppression); always on with evpn.
	Proxy bool `yaml:"proxy"`
	// RD is the EVPN route distinguisher (default router-id:VNI).
	RD string `yaml:"rd"`
	// ImportTargets and ExportTargets are the EVPN route targets
	// (default AS:VNI).
	ImportTargets []string `yaml:"import_targets"`
	ExportTargets []string `yaml:"export_targets"`
}

// FDBEntryConfig is a static VXLAN FDB entry.
type FDBEntryConfig struct {
	// MAC is the inner MAC address.
	MAC string `yaml:"mac"`
	// Remote is the VTEP it lives behind.
	Remote string `yaml:"remote"`
}

// GeneveConfig holds Geneve's own settings.
type GeneveConfig struct {
	// L3 carries IP packets instead of Ethernet frames
	// (innerprotoinherit).
	L3 bool `yaml:"l3"`
}

// L2TPConfig holds L2TPv3's own settings.
type L2TPConfig struct {
	// TunnelID and PeerTunnelID identify the tunnel (default 1).
	TunnelID     uint32 `yaml:"tunnel_id"`
	PeerTunnelID uint32 `yaml:"peer_tunnel_id"`
	// PeerSessionID is the peer's session ID (default: ID).
	PeerSessionID uint32 `yaml:"peer_session_id"`
	// Cookie and PeerCookie are 0, 4 or 8 bytes in hex.
	Cookie     string `yaml:"cookie"`
	PeerCookie string `yaml:"peer_cookie"`
	// L2Spec is none (default) or default.
	L2Spec string `yaml:"l2spec"`
	// Seq is none (default), send, recv or both.
	Seq string `yaml:"seq"`
}

// GTPUConfig holds GTP-U's own settings.
type GTPUConfig struct {
	// Role is ggsn (default) or sgsn.
	Role string `yaml:"role"`
	// Sessions are the PDP/PDU sessions.
	Sessions []GTPUSessionConfig `yaml:"sessions"`
}

// GTPUSessionConfig is one GTP-U session.
type GTPUSessionConfig struct {
	LocalTEID  uint32 `yaml:"local_teid"`
	RemoteTEID uint32 `yaml:"remote_teid"`
	// Peer is the peer's underlay address (default: the interface's
	// remote).
	Peer string `yaml:"peer"`
	// UE4 and UE6 are the UE's inner addresses.
	UE4 string `yaml:"ue4"`
	UE6 string `yaml:"ue6"`
}

// FOUConfig holds FOU's own settings.
type FOUConfig struct {
	// Proto is what FOU carries: gre (default: both inner families), ipip
	// or ipv6.
	Proto string `yaml:"proto"`
}

// BareUDPConfig holds bareudp's own settings.
type BareUDPConfig struct {
	// LocalLabels are the MPLS labels popped on receive (mplsudp; default
	// the interface's ID).
	LocalLabels []uint32 `yaml:"local_labels"`
}

// SOCKS5Config configures the SOCKS5 listener.
type SOCKS5Config struct {
	// Listen is the listener's address (default 127.0.0.1:1080).
	Listen string `yaml:"listen"`
	// Username and Password turn on RFC 1929 authentication.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// UDP enables UDP ASSOCIATE (default true).
	UDP *bool `yaml:"udp"`
}

// HTTPConnectConfig configures the HTTP CONNECT proxy.
type HTTPConnectConfig struct {
	// Listen is the listener's address (default 127.0.0.1:8080).
	Listen string `yaml:"listen"`
	// Username and Password turn on Basic proxy authentication
	// (Proxy-Authorization).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// ForwardConfig is one static port forward.
type ForwardConfig struct {
	// Proto is tcp or udp.
	Proto string `yaml:"proto"`
	// Direction is host-to-overlay (default) or overlay-to-host.
	Direction string `yaml:"direction"`
	// Listen is where connections arrive (a host address for
	// host-to-overlay, an overlay address for overlay-to-host).
	Listen string `yaml:"listen"`
	// Target is where they go.
	Target string `yaml:"target"`
	// IdleTimeout ends idle UDP sessions (default 60s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxSessions caps UDP sessions (default 1024).
	MaxSessions int `yaml:"max_sessions"`
}

// InnerTUNConfig is a host TUN device whose other end is a NIC of the
// stack: packets the host routes into it are forwarded by the stack into
// the overlay, and replies come back the same way.
type InnerTUNConfig struct {
	// Name is the TUN device's name (default "udptunnel1").
	Name string `yaml:"name"`
	// Address is the stack's address on the TUN, a prefix
	// (10.99.0.1/30); the host side takes another address of it.
	Address string `yaml:"address"`
	// MTU of the TUN (default: the smallest interface MTU).
	MTU uint32 `yaml:"mtu"`
}

// PcapConfig configures packet capture.
type PcapConfig struct {
	// Outer captures the underlay (outer packets) to this file.
	Outer string `yaml:"outer"`
	// Inner captures every tunnel interface's inner packets to this
	// file (Ethernet frames for L2 interfaces).
	Inner string `yaml:"inner"`
}

// Duration is a time.Duration written as "300ms", "5s", "1m".
type Duration time.Duration

// UnmarshalYAML decodes a Go duration string. Its error is a
// *yaml.TypeError so that decoding goes on and parseConfig names the key.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration like 500ms, 5s or 1m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// configError is an error about one key of the configuration.
type configError struct {
	path string
	line int
	msg  string
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.line, e.path, e.msg)
	}
	return fmt.Sprintf("%s: %s", e.path, e.msg)
}

// loadConfig reads and checks the configuration file at path.
func loadConfig(path string) (*Config, *lines, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parseConfig(b)
}

// parseConfig decodes b strictly and checks every value; the lines let
// later errors (from building interfaces) name their line too.
func parseConfig(b []byte) (*Config, *lines, error) {
	var cfg Config
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	l := &lines{root: &root}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, nil, l.decodeErrors(te)
		}
		return nil, nil, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := cfg.check(l); err != nil {
		return nil, nil, err
	}
	return &cfg, l, nil
}

// The messages of a *yaml.TypeError, which name a line but not the key.
var (
	unknownKeyError = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)
	badValueError   = regexp.MustCompile("^line (\\d+): (?:cannot unmarshal \\S+(?: `(.*)`)? into .*|(\".*\") is not a duration.*)$")
)

// decodeErrors turns the decoder's errors into configErrors that name the
// key path: an unknown key, or a value of the wrong type or form.
func (l *lines) decodeErrors(te *yaml.TypeError) error {
	var errs []error
	for _, msg := range te.Errors {
		if m := unknownKeyError.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if path := l.find(line, func(k, _ *yaml.Node) bool { return k != nil && k.Value == m[2] }); path != nil {
				errs = append(errs, &configError{path: pathString(path), line: line, msg: "unknown key"})
				continue
			}
		}
		if m := badValueError.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			want, prefix := m[2], false
			if m[3] != "" {
				want, _ = strconv.Unquote(m[3])
			} else if strings.HasSuffix(want, "...") {
				// The decoder shortens long values.
				want, prefix = strings.TrimSuffix(want, "..."), true
			}
			kind := map[bool]yaml.Kind{true: yaml.MappingNode, false: yaml.SequenceNode}[strings.Contains(msg, "unmarshal !!map into")]
			scalar := strings.Contains(msg, "`") || m[3] != ""
			path := l.find(line, func(_, v *yaml.Node) bool {
				if !scalar {
					// A mapping or sequence where something else was due.
					return v.Line == line && v.Kind == kind
				}
				return v.Kind == yaml.ScalarNode && (v.Value == want || prefix && strings.HasPrefix(v.Value, want))
			})
			if path != nil {
				rest := strings.TrimPrefix(msg, "line "+m[1]+": ")
				errs = append(errs, &configError{path: pathString(path), line: line, msg: rest})
				continue
			}
		}
		errs = append(errs, errors.New("config: "+msg))
	}
	return errors.Join(errs...)
}

// find returns the key path of the first node on line that match accepts,
// the innermost first: match sees each mapping key with its value, and each
// sequence item (with a nil key). It returns nil if none does.
func (l *lines) find(line int, match func(key, value *yaml.Node) bool) []any {
	var walk func(n *yaml.Node, path []any) []any
	walk = func(n *yaml.Node, path []any) []any {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p := walk(c, path); p != nil {
					return p
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(slices.Clip(path), k.Value)
				if q := walk(v, p); q != nil {
					return q
				}
				if (k.Line == line || v.Line == line) && match(k, v) {
					return p
				}
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				p := append(slices.Clip(path), i)
				if q := walk(v, p); q != nil {
					return q
				}
				if v.Line == line && match(nil, v) {
					return p
				}
			}
		}
		return nil
	}
	if l == nil || l.root == nil {
		return nil
	}
	return walk(l.root, nil)
}

// lines finds the line of a key path in the decoded document.
type lines struct{ root *yaml.Node }

// at returns the line of the node at path: map keys and slice indexes.
// It returns 0 when the path is not in the document (a default).
func (l *lines) at(path ...any) int {
	if l == nil || l.root == nil {
		return 0
	}
	n := l.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

// errAt returns a configError for path.
func (l *lines) errAt(msg string, path ...any) error {
	return &configError{path: pathString(path), line: l.at(path...), msg: msg}
}

// pathString formats a key path as interfaces[0].vxlan.fdb[1].mac.
func pathString(path []any) string {
	var sb strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if sb.Len() > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(k)
		case int:
			sb.WriteString("[" + strconv.Itoa(k) + "]")
		}
	}
	return sb.String()
}

// protocolTypes are the interface types, with the sections they accept.
var protocolTypes = map[string]string{
	"vxlan": "vxlan", "geneve": "geneve", "l2tp": "l2tp", "gtpu": "gtpu",
	"fou": "fou", "gue": "", "bareudp": "", "mplsudp": "bareudp",
}

// check checks every value of the configuration that can be checked
// without building anything; building the interfaces checks the rest.
func (c *Config) check(l *lines) error {
	var errs []error
	bad := func(msg string, path ...any) { errs = append(errs, l.errAt(msg, path...)) }
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		bad(fmt.Sprintf("%q: want debug, info, warn or error", c.Log.Level), "log", "level")
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		bad(fmt.Sprintf("%q: want text or json", c.Log.Format), "log", "format")
	}
	if c.Admin.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Admin.Listen); err != nil {
			bad(fmt.Sprintf("%q: want address:port", c.Admin.Listen), "admin", "listen")
		}
	}
	u := &c.Underlay
	switch u.Type {
	case "", "hostudp":
		if u.Address != "" {
			if _, err := netip.ParseAddr(u.Address); err != nil {
				bad(fmt.Sprintf("%q: want an IP address", u.Address), "underlay", "address")
			}
		}
		if u.Bind != "" {
			if _, err := netip.ParseAddr(u.Bind); err != nil {
				bad(fmt.Sprintf("%q: want an IP address", u.Bind), "underlay", "bind")
			}
		}
		if u.Name != "" || u.Gateway != "" {
			bad("name and gateway are for the tun underlay", "underlay", "type")
		}
	case "tun":
		if _, err := netip.ParsePrefix(u.Address); err != nil {
			bad(fmt.Sprintf("%q: the tun underlay needs the stack's address as a prefix (10.201.0.1/24)", u.Address), "underlay", "address")
		}
		if u.Gateway != "" {
			if _, err := netip.ParseAddr(u.Gateway); err != nil {
				bad(fmt.Sprintf("%q: want an IP address", u.Gateway), "underlay", "gateway")
			}
		}
		if u.Bind != "" {
			bad("bind is for the hostudp underlay", "underlay", "bind")
		}
	default:
		bad(fmt.Sprintf("%q: want hostudp or tun", u.Type), "underlay", "type")
	}
	if u.Offload {
		switch {
		case u.Type == "tun":
			bad("the inner-offload mode is the hostudp underlay's", "underlay", "offload")
		case c.InnerTUN != nil:
			bad("not with inner_tun: merged segments are larger than its MTU", "underlay", "offload")
		case c.Pcap.Outer != "":
			bad("not with pcap.outer: it would record 64 KiB packets", "underlay", "offload")
		}
		for i, ic := range c.Interfaces {
			if ic.Type != "vxlan" {
				bad(fmt.Sprintf("interfaces[%d] is %s: the inner-offload mode needs every interface to be vxlan", i, ic.Type), "underlay", "offload")
				break
			}
		}
	}
	if u.MTU != 0 && (u.MTU < 576 || u.MTU > 65535) {
		bad(fmt.Sprintf("%d: want 576..65535", u.MTU), "underlay", "mtu")
	}
	if len(c.Interfaces) == 0 {
		bad("at least one interface is needed", "interfaces")
	}
	names := map[string]int{}
	for i := range c.Interfaces {
		errs = append(errs, c.Interfaces[i].check(l, i, names, c.EVPN != nil)...)
	}
	if e := c.EVPN; e != nil {
		errs = append(errs, e.check(l)...)
	}
	if s := c.SOCKS5; s != nil {
		if s.Listen != "" {
			if _, err := netip.ParseAddrPort(s.Listen); err != nil {
				bad(fmt.Sprintf("%q: want address:port", s.Listen), "socks5", "listen")
			}
		}
		if (s.Username == "") != (s.Password == "") {
			bad("username and password go together", "socks5", "username")
		}
	}
	if h := c.HTTPConnect; h != nil {
		if h.Listen != "" {
			if _, err := netip.ParseAddrPort(h.Listen); err != nil {
				bad(fmt.Sprintf("%q: want address:port", h.Listen), "http_connect", "listen")
			}
		}
		if (h.Username == "") != (h.Password == "") {
			bad("username and password go together", "http_connect", "username")
		}
	}
	if t := c.InnerTUN; t != nil {
		if _, err := netip.ParsePrefix(t.Address); err != nil {
			bad(fmt.Sprintf("%q: want the stack's address on the TUN as a prefix (10.99.0.1/30)", t.Address), "inner_tun", "address")
		}
		if t.MTU != 0 && (t.MTU < 576 || t.MTU > 65535) {
			bad(fmt.Sprintf("%d: want 576..65535", t.MTU), "inner_tun", "mtu")
		}
	}
	for i, f := range c.Forwards {
		switch f.Proto {
		case "tcp", "udp":
		default:
			bad(fmt.Sprintf("%q: want tcp or udp", f.Proto), "forwards", i, "proto")
		}
		switch f.Direction {
		case "", "host-to-overlay", "overlay-to-host":
		default:
			bad(fmt.Sprintf("%q: want host-to-overlay or overlay-to-host", f.Direction), "forwards", i, "direction")
		}
		// What internal/forward refuses is refused here too, so that
		// check does not pass a file that run then fails on.
		if ap, err := netip.ParseAddrPort(f.Listen); err != nil {
			bad(fmt.Sprintf("%q: want address:port", f.Listen), "forwards", i, "listen")
		} else if ap.Addr().Zone() != "" {
			bad(fmt.Sprintf("%q: zoned addresses are not supported", f.Listen), "forwards", i, "listen")
		}
		if ap, err := netip.ParseAddrPort(f.Target); err != nil {
			bad(fmt.Sprintf("%q: want address:port", f.Target), "forwards", i, "target")
		} else if ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			bad(fmt.Sprintf("%q: want an address that is not unspecified nor zoned, and a port that is not 0", f.Target), "forwards", i, "target")
		}
		if f.IdleTimeout != 0 && f.Proto == "tcp" {
			bad("only udp forwards have one", "forwards", i, "idle_timeout")
		}
		if f.MaxSessions < 0 {
			bad(fmt.Sprintf("%d: must not be negative", f.MaxSessions), "forwards", i, "max_sessions")
		}
	}
	return errors.Join(errs...)
}

// check checks one interface's values; i is its index, names the names
// seen so far.
func (ic *InterfaceConfig) check(l *lines, i int, names map[string]int, evpn bool) []error {
	var errs []error
	bad := func(msg string, path ...any) {
		errs = append(errs, l.errAt(msg, append([]any{"interfaces", i}, path...)...))
	}
	section, ok := protocolTypes[ic.Type]
	if !ok {
		bad(fmt.Sprintf("%q: want one of vxlan, geneve, l2tp, gtpu, fou, gue, bareudp, mplsudp", ic.Type), "type")
		return errs
	}
	for name, set := range map[string]bool{
		"vxlan": ic.VXLAN != nil, "geneve": ic.Geneve != nil, "l2tp": ic.L2TP != nil,
		"gtpu": ic.GTPU != nil, "fou": ic.FOU != nil, "bareudp": ic.BareUDP != nil,
	} {
		if set && name != section {
			bad(fmt.Sprintf("a %s section does not belong to a %s interface", name, ic.Type), name)
		}
	}
	if ic.Name != "" {
		if j, dup := names[ic.Name]; dup {
			bad(fmt.Sprintf("%q is also the name of interfaces[%d]", ic.Name, j), "name")
		}
		names[ic.Name] = i
	}
	needID := map[string]bool{"vxlan": true, "geneve": true, "l2tp": true, "mplsudp": true}
	if needID[ic.Type] && ic.ID == nil {
		bad(fmt.Sprintf("a %s interface needs an id", ic.Type), "id")
	}
	// With EVPN a VXLAN interface's remotes come from BGP.
	if ic.Type != "gtpu" && ic.Remote == "" && !(evpn && ic.Type == "vxlan") {
		bad(fmt.Sprintf("a %s interface needs a remote", ic.Type), "remote")
	}
	addr := func(s string, path ...any) {
		if s == "" {
			return
		}
		if _, err := netip.ParseAddr(s); err != nil {
			bad(fmt.Sprintf("%q: want an IP address", s), path...)
		}
	}
	addr(ic.Remote, "remote")
	addr(ic.Local, "local")
	for j, r := range ic.Remotes {
		addr(r, "remotes", j)
	}
	if len(ic.Remotes) > 0 && ic.Type != "vxlan" {
		bad("only vxlan interfaces have several remotes", "remotes")
	}
	if len(ic.Addresses) == 0 {
		bad("at least one inner address (a prefix such as 192.168.42.1/24) is needed", "addresses")
	}
	for j, a := range ic.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			bad(fmt.Sprintf("%q: want a prefix such as 192.168.42.1/24", a), "addresses", j)
		}
	}
	for j, r := range ic.Routes {
		if _, err := netip.ParsePrefix(r.To); err != nil {
			bad(fmt.Sprintf("%q: want a prefix", r.To), "routes", j, "to")
		}
		addr(r.Via, "routes", j, "via")
	}
	if evpn && ic.Type == "vxlan" && ic.Local != "" {
		// The routes name the VTEP, the underlay address; an outer source
		// of its own would leave peers sending elsewhere.
		bad("with evpn the outer source is the VTEP address: set underlay.address instead", "local")
	}
	if v := ic.VXLAN; v != nil {
		if evpn && v.Learning {
			bad("learning must be off with evpn: the table comes from BGP only", "vxlan", "learning")
		}
		if !evpn && (v.RD != "" || len(v.ImportTargets) > 0 || len(v.ExportTargets) > 0) {
			bad("rd and route targets need an evpn section", "vxlan", "rd")
		}
		for j, e := range v.FDB {
			if _, err := parseMAC(e.MAC); err != nil {
				bad(fmt.Sprintf("%q: want a MAC address such as 02:00:00:00:00:01", e.MAC), "vxlan", "fdb", j, "mac")
			}
			addr(e.Remote, "vxlan", "fdb", j, "remote")
		}
	}
	if t := ic.L2TP; t != nil {
		for _, k := range []struct{ key, v string }{{"cookie", t.Cookie}, {"peer_cookie", t.PeerCookie}} {
			if _, err := parseCookie(k.v); err != nil {
				bad(err.Error(), "l2tp", k.key)
			}
		}
		switch t.L2Spec {
		case "", "none", "default":
		default:
			bad(fmt.Sprintf("%q: want none or default", t.L2Spec), "l2tp", "l2spec")
		}
		switch t.Seq {
		case "", "none", "send", "recv", "both":
		default:
			bad(fmt.Sprintf("%q: want none, send, recv or both", t.Seq), "l2tp", "seq")
		}
	}
	if g := ic.GTPU; g != nil {
		switch g.Role {
		case "", "ggsn", "sgsn":
		default:
			bad(fmt.Sprintf("%q: want ggsn or sgsn", g.Role), "gtpu", "role")
		}
		for j, s := range g.Sessions {
			addr(s.Peer, "gtpu", "sessions", j, "peer")
			addr(s.UE4, "gtpu", "sessions", j, "ue4")
			addr(s.UE6, "gtpu", "sessions", j, "ue6")
		}
	}
	if ic.Type == "gtpu" && (ic.GTPU == nil || len(ic.GTPU.Sessions) == 0) {
		bad("a gtpu interface needs gtpu.sessions", "gtpu")
	}
	if f := ic.FOU; f != nil {
		switch f.Proto {
		case "", "gre", "ipip", "ipv6":
		default:
			bad(fmt.Sprintf("%q: want gre, ipip or ipv6", f.Proto), "fou", "proto")
		}
	}
	return errs
}

// check checks the evpn section's syntax; evpn.Config.Validate checks
// the values at build time.
func (e *EVPNConfig) check(l *lines) []error {
	var errs []error
	bad := func(msg string, path ...any) { errs = append(errs, l.errAt(msg, append([]any{"evpn"}, path...)...)) }
	addr := func(s string, path ...any) {
		if s == "" {
			return
		}
		if _, err := netip.ParseAddr(s); err != nil {
			bad(fmt.Sprintf("%q: want an IP address", s), path...)
		}
	}
	addr(e.RouterID, "router_id")
	for j, a := range e.ListenAddresses {
		addr(a, "listen_addresses", j)
	}
	if len(e.Neighbors) == 0 {
		bad("at least one neighbor is needed", "neighbors")
	}
	for j, n := range e.Neighbors {
		if n.Address == "" {
			bad("a neighbor needs an address", "neighbors", j, "address")
		}
		addr(n.Address, "neighbors", j, "address")
		addr(n.LocalAddress, "neighbors", j, "local_address")
	}
	return errs
}

// parseMAC parses an Ethernet address (net.ParseMAC, six bytes only).
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err == nil && len(m) != 6 {
		err = errors.New("not a 6-byte MAC address")
	}
	return m, err
}

// parseCookie parses an L2TPv3 cookie: empty, or 4 or 8 bytes in hex
// (colons allowed).
func parseCookie(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimPrefix(s, "0x"), ":", ""))
	if err != nil || (len(b) != 0 && len(b) != 4 && len(b) != 8) {
		return nil, fmt.Errorf("%q: want 4 or 8 bytes in hex", s)
	}
	return b, nil
}
