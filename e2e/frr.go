//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FRR paths: the Debian package frr installs its daemons outside PATH.
var (
	FRRZebra = "/usr/lib/frr/zebra"
	FRRBGPd  = "/usr/lib/frr/bgpd"
	FRRVtysh = "vtysh"
)

// FRRNeighbor is one BGP neighbour of an FRR instance.
type FRRNeighbor struct {
	Addr netip.Addr
	ASN  uint32
	// Passive makes FRR wait for the neighbour to connect (`neighbor X
	// passive`), as when the other side is a speaker under test whose
	// connection attempts the test wants to see.
	Passive bool
	// RRClient makes the neighbour a route-reflector client for l2vpn
	// evpn (`neighbor X route-reflector-client`): FRR then passes iBGP
	// routes between its clients, as a spine does between leaf VTEPs.
	RRClient bool
}

// FRRConfig configures one FRR instance (zebra and bgpd) for EVPN.
type FRRConfig struct {
	ASN       uint32 // local AS
	RouterID  netip.Addr
	Neighbors []FRRNeighbor
	// RouteTargets, if non-empty, gives VNIs explicit route targets
	// (`vni N`, `route-target import X`, `route-target export X` under
	// `address-family l2vpn evpn`), X as "65000:100". eBGP needs them: FRR's
	// automatic route target is LOCAL-AS:VNI, which differs on each side.
	RouteTargets map[uint32]string
	ListenPort   int // 0 = 179
}

// FRR is a private FRR instance made for one test: zebra and bgpd started
// by hand inside a network namespace the test made, with their
// configuration files, pid files, zebra socket (-z), vty sockets
// (--vty_socket) and logs in a directory of their own. /etc/frr and
// /var/run/frr of the system are neither read nor written, and several
// instances run at once. bgpd speaks EVPN with `advertise-all-vni`: zebra
// reads the namespace's VXLAN devices and bridges (see NewKernelVTEP) and
// installs the remote VTEPs and MACs that bgpd learns into the VXLAN
// device's FDB.
//
// The Debian package is frr (8.4); its daemons live in /usr/lib/frr.
type FRR struct {
	ns   *Netns
	dir  string
	cfg  FRRConfig
	name string // hostname in the configuration, for logs

	zebra, bgpd *daemon
	stopOnce    sync.Once
	stopErr     error
}

var frrSeq atomic.Uint32

// StartFRR starts zebra, waits until it serves its socket, then starts bgpd,
// both in ns and with cfg, and waits until bgpd has read its
// configuration. Both are
// stopped when t and its subtests end, whether they pass or fail (SIGTERM,
// SIGKILL after 5 s), before ns is deleted if ns was made first; when t has
// failed, both daemons' logs are written to t.Log. StartFRR skips t, saying
// what is missing, without root, without zebra, bgpd or vtysh, or without
// the user frr.
//
// The daemons run as user frr and group frr (the package's default) with
// -P 0 (no TCP vty; vtysh uses the socket), -A 127.0.0.1, no module (-M),
// `--log file:` into the directory, bgpd with -p ListenPort.
//
// The bgpd configuration is
//
//	router bgp ASN
//	 bgp router-id ROUTER-ID
//	 bgp log-neighbor-changes
//	 no bgp default ipv4-unicast
//	 no bgp ebgp-requires-policy
//	 no bgp network import-check
//	 timers bgp 3 9
//	 neighbor X remote-as N
//	 neighbor X timers connect 1
//	 neighbor X advertisement-interval 0
//	 neighbor X passive                    (if Passive)
//	 address-family l2vpn evpn
//	  neighbor X activate
//	  advertise-all-vni
//	  vni N                                (for each RouteTargets entry)
//	   route-target import RT
//	   route-target export RT
//	  exit-vni
//	 exit-address-family
//
// The timers are test settings: Debian's "traditional" defaults retry a
// refused connection only after 120 s, hold a dead peer for 180 s and
// delay eBGP updates by up to 30 s (advertisement-interval).
func StartFRR(t testing.TB, ns *Netns, cfg FRRConfig) *FRR {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FRR: needs root (zebra programs the kernel, bgpd binds port 179)")
	}
	for _, p := range []string{FRRZebra, FRRBGPd} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("FRR: needs %s (Debian package frr): %v", p, err)
		}
	}
	if _, err := exec.LookPath(FRRVtysh); err != nil {
		t.Skipf("FRR: needs %s (Debian package frr), not found in PATH", FRRVtysh)
	}
	uid, gid, err := frrUser()
	if err != nil {
		t.Skipf("FRR: needs the user and group frr the package makes: %v", err)
	}
	if !cfg.RouterID.Is4() {
		t.Fatalf("FRR: RouterID %v is not an IPv4 address", cfg.RouterID)
	}

	// t.TempDir keeps names short enough for sun_path (it cuts the test
	// name to 64 bytes). The daemons run as frr: they must reach the
	// directory, which TempDir makes 0700 for root.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	f := &FRR{ns: ns, dir: dir, cfg: cfg, name: fmt.Sprintf("frr%d", frrSeq.Add(1))}
	t.Cleanup(func() {
		f.Stop()
		if f.stopErr != nil {
			t.Errorf("stopping FRR %s: %v", f.name, f.stopErr)
		}
		if t.Failed() {
			t.Logf("FRR %s (netns %s) zebra.log:\n%s", f.name, ns.Name(), f.readFile("zebra.log"))
			t.Logf("FRR %s (netns %s) bgpd.log:\n%s", f.name, ns.Name(), f.readFile("bgpd.log"))
		}
	})
	for name, text := range map[string]string{
		"zebra.conf": "hostname " + f.name + "\n",
		"bgpd.conf":  f.bgpdConfig(),
		// vtysh reads vtysh.conf from --config_dir, this directory,
		// rather than /etc/frr.
		"vtysh.conf": "",
	} {
		p := f.path(name)
		if err := os.WriteFile(p, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}

	common := func(d string) []string {
		return []string{"-f", f.path(d + ".conf"), "-i", f.path(d + ".pid"), "-z", f.path("zserv.api"),
			"--vty_socket", dir, "-A", "127.0.0.1", "-P", "0", "--log", "file:" + f.path(d+".log"),
			"-u", "frr", "-g", "frr"}
	}
	if f.zebra, err = f.start("zebra", append([]string{FRRZebra}, common("zebra")...)...); err != nil {
		t.Fatal(err)
	}
	if err := f.waitFor(f.zebra, "zserv.api", "zebra.vty"); err != nil {
		t.Fatalf("%v\n%s", err, f.readFile("zebra.log"))
	}
	port := cfg.ListenPort
	if port == 0 {
		port = 179
	}
	if f.bgpd, err = f.start("bgpd", append(append([]string{FRRBGPd}, common("bgpd")...), "-p", strconv.Itoa(port))...); err != nil {
		t.Fatal(err)
	}
	if err := f.waitFor(f.bgpd, "bgpd.vty"); err != nil {
		t.Fatalf("%v\n%s", err, f.readFile("bgpd.log"))
	}
	// bgpd reads its configuration file on an event after it opens its
	// vty: wait until the router is there.
	router := fmt.Sprintf("\nrouter bgp %d\n", cfg.ASN)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := f.vtysh("show running-config")
		if err == nil && strings.Contains(out, router) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FRR %s: bgpd has no %q in its running configuration after 10s (%v):\n%s\n%s", f.name, strings.TrimSpace(router), err, out, f.Logs())
		}
	}
	return f
}

// frrUser looks up the user and group frr.
func frrUser() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, err
	}
	g, err := user.LookupGroup("frr")
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

func (f *FRR) bgpdConfig() string {
	c := f.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\n", f.name)
	fmt.Fprintf(&b, "router bgp %d\n", c.ASN)
	fmt.Fprintf(&b, " bgp router-id %s\n", c.RouterID)
	b.WriteString(" bgp log-neighbor-changes\n")
	b.WriteString(" no bgp default ipv4-unicast\n")
	b.WriteString(" no bgp ebgp-requires-policy\n")
	b.WriteString(" no bgp network import-check\n")
	b.WriteString(" timers bgp 3 9\n")
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n.Addr, n.ASN)
		fmt.Fprintf(&b, " neighbor %s timers connect 1\n", n.Addr)
		fmt.Fprintf(&b, " neighbor %s advertisement-interval 0\n", n.Addr)
		if n.Passive {
			fmt.Fprintf(&b, " neighbor %s passive\n", n.Addr)
		}
	}
	b.WriteString(" address-family l2vpn evpn\n")
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, "  neighbor %s activate\n", n.Addr)
		if n.RRClient {
			fmt.Fprintf(&b, "  neighbor %s route-reflector-client\n", n.Addr)
		}
	}
	b.WriteString("  advertise-all-vni\n")
	vnis := make([]uint32, 0, len(c.RouteTargets))
	for vni := range c.RouteTargets {
		vnis = append(vnis, vni)
	}
	slices.Sort(vnis)
	for _, vni := range vnis {
		rt := c.RouteTargets[vni]
		fmt.Fprintf(&b, "  vni %d\n   route-target import %s\n   route-target export %s\n  exit-vni\n", vni, rt, rt)
	}
	b.WriteString(" exit-address-family\nexit\n")
	return b.String()
}

// Config returns bgpd's configuration file as StartFRR wrote it.
func (f *FRR) Config() string { return f.readFile("bgpd.conf") }

// Dir returns the instance's directory: configuration, sockets, pid files,
// logs.
func (f *FRR) Dir() string { return f.dir }

// Netns returns the namespace the instance runs in.
func (f *FRR) Netns() *Netns { return f.ns }

// Logs returns zebra's and bgpd's logs so far, for failure messages.
func (f *FRR) Logs() string {
	return "zebra.log:\n" + f.readFile("zebra.log") + "\nbgpd.log:\n" + f.readFile("bgpd.log")
}

func (f *FRR) path(name string) string { return filepath.Join(f.dir, name) }

func (f *FRR) readFile(name string) string {
	b, err := os.ReadFile(f.path(name))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// start starts a daemon in the foreground in the namespace: it is our child
// (ip netns exec execs it), and we signal and reap it ourselves.
func (f *FRR) start(name string, argv ...string) (*daemon, error) {
	d := &daemon{name: name, cmd: f.ns.Command(argv...), done: make(chan struct{})}
	out, err := os.Create(f.path(name + ".out"))
	if err != nil {
		return nil, err
	}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		out.Close()
		close(d.done)
	}()
	return d, nil
}

// waitFor waits until the daemon has made the files (its sockets).
func (f *FRR) waitFor(d *daemon, files ...string) error {
	deadline := time.After(10 * time.Second)
	for {
		missing := ""
		for _, file := range files {
			if _, err := os.Stat(f.path(file)); err != nil {
				missing = file
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("FRR %s: %s exited (%v) before making %s; its output: %s", f.name, d.name, d.err, missing, f.readFile(d.name+".out"))
		case <-deadline:
			return fmt.Errorf("FRR %s: %s made no %s in 10s", f.name, d.name, missing)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop stops bgpd, then zebra, now: SIGTERM, SIGKILL after 5 s. bgpd sends
// its peers a Cease notification as it goes, so they withdraw its routes at
// once. Stop may be called more than once; t's cleanup calls it too.
func (f *FRR) Stop() {
	f.stopOnce.Do(func() {
		f.stopErr = stopDaemons(f.bgpd, f.zebra)
	})
}

// VtyshCommand returns the command that runs vtysh against this instance
// with the commands cmds (-c each), for commands that may fail.
func (f *FRR) VtyshCommand(cmds ...string) *exec.Cmd {
	args := []string{"--vty_socket", f.dir, "--config_dir", f.dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return exec.Command(FRRVtysh, args...)
}

// Vtysh runs one vtysh command (`vtysh --vty_socket DIR -c cmd`) against
// this instance's daemons and returns its output; it fails t when vtysh
// fails. Configuration takes several: "configure\nrouter bgp 65000\n...".
func (f *FRR) Vtysh(t testing.TB, cmd string) string {
	t.Helper()
	out, err := f.vtysh(cmd)
	if err != nil {
		t.Fatalf("FRR %s: %v", f.name, err)
	}
	return out
}

func (f *FRR) vtysh(cmd string) (string, error) {
	out, err := f.VtyshCommand(cmd).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("vtysh -c %q: %v\n%s", cmd, err, out)
	}
	return string(out), nil
}

// WaitEstablished polls bgpd (`show bgp neighbors PEER json`) every 100 ms
// until its session with peer is Established, and returns nil then; or the
// last state seen when ctx ends.
func (f *FRR) WaitEstablished(ctx context.Context, peer netip.Addr) error {
	state := "unknown"
	for {
		out, err := f.vtysh("show bgp neighbors " + peer.String() + " json")
		if err == nil {
			var nbrs map[string]struct {
				State string `json:"bgpState"`
			}
			if err := json.Unmarshal([]byte(out), &nbrs); err != nil {
				state = fmt.Sprintf("unparsable: %v: %s", err, out)
			} else if n, ok := nbrs[peer.String()]; ok {
				state = n.State
			} else {
				state = "not a neighbour: " + strings.TrimSpace(out)
			}
		} else {
			state = err.Error()
		}
		if state == "Established" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("FRR %s: session with %v not established (%s): %w", f.name, peer, state, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FRREVPNRoute is one path of an EVPN route in bgpd's table, local or
// learned.
type FRREVPNRoute struct {
	Type   int    // route type: 2 MAC/IP advertisement, 3 inclusive multicast Ethernet tag, ...
	RD     string // route distinguisher, "10.0.0.1:2"
	Prefix string // FRR's notation, "[2]:[0]:[48]:[aa:bb:cc:dd:ee:ff]"
	// MAC is type 2's MAC address, lower case with colons.
	MAC string
	// IP is type 2's IP address, if the route has one (MAC+IP).
	IP netip.Addr
	// Originator is type 3's originating router's IP address: the remote
	// VTEP.
	Originator netip.Addr
	NextHop    netip.Addr
	// VNI is the path's VNI: the label of a type 2 route, the PMSI tunnel
	// attribute's label of a type 3 route.
	VNI uint32
	// RouteTargets are the path's route targets, "65000:100".
	RouteTargets []string
	// Communities is FRR's string of all the path's extended communities,
	// "RT:65000:100 ET:8".
	Communities string
	Best        bool
	// Local says the path is this instance's own (sourced), Peer the
	// neighbour it came from otherwise.
	Local bool
	Peer  netip.Addr
}

// EVPNRoutes returns the paths of bgpd's EVPN table, parsed from `show bgp
// l2vpn evpn route detail json`, in FRR's order of route distinguishers and
// prefixes. It fails t when vtysh fails or its output does not parse.
func (f *FRR) EVPNRoutes(t testing.TB) []FRREVPNRoute {
	t.Helper()
	routes, err := parseFRREVPN([]byte(f.Vtysh(t, "show bgp l2vpn evpn route detail json")))
	if err != nil {
		t.Fatalf("FRR %s: show bgp l2vpn evpn route detail json: %v", f.name, err)
	}
	return routes
}

// frrEVPNPrefix is one prefix of `show bgp l2vpn evpn route detail json`.
type frrEVPNPrefix struct {
	Prefix    string `json:"prefix"`
	RouteType int    `json:"routeType"`
	MAC       string `json:"mac"`
	IP        string `json:"ip"`
	// Paths is a list of lists of paths (FRR 8.4 nests them).
	Paths [][]struct {
		VNI       string `json:"vni"`
		Valid     bool   `json:"valid"`
		Local     bool   `json:"local"`
		Bestpath  any    `json:"bestpath"` // {"overall":true}, or true elsewhere
		ExtCommty struct {
			String string `json:"string"`
		} `json:"extendedCommunity"`
		PMSI struct {
			Label uint32 `json:"label"`
		} `json:"pmsi"`
		Nexthops []struct {
			IP string `json:"ip"`
		} `json:"nexthops"`
		Peer struct {
			PeerID string `json:"peerId"`
		} `json:"peer"`
	} `json:"paths"`
}

func parseFRREVPN(b []byte) ([]FRREVPNRoute, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, err
	}
	var routes []FRREVPNRoute
	for _, rd := range slices.Sorted(mapKeys(top)) {
		var entries map[string]json.RawMessage
		if json.Unmarshal(top[rd], &entries) != nil {
			continue // numPrefix, numPaths
		}
		for _, key := range slices.Sorted(mapKeys(entries)) {
			if !strings.HasPrefix(key, "[") {
				continue // "rd"
			}
			var p frrEVPNPrefix
			if err := json.Unmarshal(entries[key], &p); err != nil {
				return nil, fmt.Errorf("%s %s: %w", rd, key, err)
			}
			for _, paths := range p.Paths {
				for _, path := range paths {
					r := FRREVPNRoute{Type: p.RouteType, RD: rd, Prefix: p.Prefix, Communities: path.ExtCommty.String, Local: path.Local}
					ip, _ := netip.ParseAddr(p.IP)
					switch p.RouteType {
					case 2:
						r.MAC, r.IP = strings.ToLower(p.MAC), ip
					case 3:
						r.Originator = ip
					}
					if v, err := strconv.ParseUint(path.VNI, 10, 32); err == nil {
						r.VNI = uint32(v)
					} else {
						r.VNI = path.PMSI.Label
					}
					for _, c := range strings.Fields(path.ExtCommty.String) {
						if rt, ok := strings.CutPrefix(c, "RT:"); ok {
							r.RouteTargets = append(r.RouteTargets, rt)
						}
					}
					switch b := path.Bestpath.(type) {
					case bool:
						r.Best = b
					case map[string]any:
						r.Best, _ = b["overall"].(bool)
					}
					if len(path.Nexthops) > 0 {
						r.NextHop, _ = netip.ParseAddr(path.Nexthops[0].IP)
					}
					if !r.Local {
						r.Peer, _ = netip.ParseAddr(path.Peer.PeerID)
					}
					routes = append(routes, r)
				}
			}
		}
	}
	return routes, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// KernelVTEPConfig configures a kernel VTEP for one VNI.
type KernelVTEPConfig struct {
	VNI   uint32
	Local netip.Addr // the VXLAN device's source address, which FRR advertises
	// BridgeAddr is the bridge's address: FRR advertises MAC+IP routes
	// only for neighbours the bridge interface knows.
	BridgeAddr netip.Prefix
	Port       uint16 // 0 = 4789
	// NeighSuppress turns ARP/ND suppression on at the VXLAN port
	// (`bridge link set dev vxlanN neigh_suppress on`).
	NeighSuppress bool
}

// KernelVTEP is a VNI bridged over a kernel VXLAN device the way FRR's
// advertise-all-vni expects: a bridge brN with the VXLAN device vxlanN
// (no learning: EVPN fills its FDB) as a port, and hosts (AddHost) on veth
// ports of the same bridge.
type KernelVTEP struct {
	ns            *Netns
	cfg           KernelVTEPConfig
	Bridge, VXLAN string // interface names, brN and vxlanN
	hosts         int
}

// NewKernelVTEP builds the VTEP in ns:
//
//	ip link add brN type bridge
//	ip link add vxlanN type vxlan id N local LOCAL dstport PORT nolearning
//	ip link set vxlanN master brN
//	bridge link set dev vxlanN learning off [neigh_suppress on]
//	ip addr add BRIDGEADDR dev brN
//	ip link set brN up; ip link set vxlanN up
//	ethtool -K vxlanN tx off
//
// The last only where ethtool is installed: over veth, whose peer offers
// checksum offload, the kernel would otherwise send inner packets with
// unfinished checksums to a userspace VTEP. It fails t when a command
// fails.
func NewKernelVTEP(t testing.TB, ns *Netns, cfg KernelVTEPConfig) *KernelVTEP {
	t.Helper()
	if cfg.Port == 0 {
		cfg.Port = 4789
	}
	v := &KernelVTEP{ns: ns, cfg: cfg, Bridge: fmt.Sprintf("br%d", cfg.VNI), VXLAN: fmt.Sprintf("vxlan%d", cfg.VNI)}
	ns.Run(t, "ip", "link", "add", v.Bridge, "type", "bridge")
	ns.Run(t, "ip", "link", "add", v.VXLAN, "type", "vxlan", "id", strconv.Itoa(int(cfg.VNI)),
		"local", cfg.Local.String(), "dstport", strconv.Itoa(int(cfg.Port)), "nolearning")
	ns.Run(t, "ip", "link", "set", v.VXLAN, "master", v.Bridge)
	link := []string{"bridge", "link", "set", "dev", v.VXLAN, "learning", "off"}
	if cfg.NeighSuppress {
		link = append(link, "neigh_suppress", "on")
	}
	ns.Run(t, link...)
	if cfg.BridgeAddr.IsValid() {
		ns.Run(t, ipAddrAdd(cfg.BridgeAddr, v.Bridge)...)
	}
	ns.Run(t, "ip", "link", "set", v.Bridge, "up")
	ns.Run(t, "ip", "link", "set", v.VXLAN, "up")
	txOff(t, ns, v.VXLAN)
	return v
}

// ipAddrAdd is `ip addr add P dev DEV`, nodad for IPv6 (usable at once).
func ipAddrAdd(p netip.Prefix, dev string) []string {
	args := []string{"ip", "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	return args
}

// txOff turns tx checksum offload off on dev where ethtool exists.
func txOff(t testing.TB, ns *Netns, dev string) {
	t.Helper()
	if _, err := exec.LookPath("ethtool"); err == nil {
		ns.Run(t, "ethtool", "-K", dev, "tx", "off")
	}
}

// Netns returns the namespace the VTEP is in.
func (v *KernelVTEP) Netns() *Netns { return v.ns }

// AddHost makes a host on the VNI: a new namespace (named after name) with
// the end eth0 of a veth pair whose other end is a port of the bridge, tx
// checksum offload off on both ends (where ethtool exists), addr on eth0,
// eth0 and lo up. It returns the host's namespace.
func (v *KernelVTEP) AddHost(t testing.TB, name string, addr netip.Prefix) *Netns {
	t.Helper()
	h := NewNetns(t, name)
	v.hosts++
	port := fmt.Sprintf("vh%dp%d", v.cfg.VNI, v.hosts)
	v.ns.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.Name())
	v.ns.Run(t, "ip", "link", "set", port, "master", v.Bridge)
	txOff(t, v.ns, port)
	txOff(t, h, "eth0")
	v.ns.Run(t, "ip", "link", "set", port, "up")
	h.Run(t, ipAddrAdd(addr, "eth0")...)
	h.Run(t, "ip", "link", "set", "eth0", "up")
	h.Run(t, "ip", "link", "set", "lo", "up")
	return h
}

// KernelFDBEntry is one entry of `bridge -j fdb show dev vxlanN`.
type KernelFDBEntry struct {
	MAC string     // lower case with colons; 00:00:00:00:00:00 is the flood list
	Dst netip.Addr // the remote VTEP, for the VXLAN device's own entries
	// Self says the entry is the VXLAN device's own (dst, the one EVPN
	// writes); Master names the bridge for the bridge's entry of the port.
	Self   bool
	Master string
	// State is "permanent", "static" or "" (learned); Static says it is not
	// aged out (permanent or static).
	State       string
	Static      bool
	ExternLearn bool // added from outside (by zebra), "extern_learn"
	Flags       []string
}

// FDB returns the VXLAN device's forwarding database (`bridge -j fdb show
// dev vxlanN`): the bridge's entries for the port and the device's own,
// with remote VTEPs. It fails t when the command or its parsing fails.
func (v *KernelVTEP) FDB(t testing.TB) []KernelFDBEntry {
	t.Helper()
	out := v.ns.Run(t, "bridge", "-j", "fdb", "show", "dev", v.VXLAN)
	var raw []struct {
		MAC    string   `json:"mac"`
		Dst    string   `json:"dst"`
		Master string   `json:"master"`
		State  string   `json:"state"`
		Flags  []string `json:"flags"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("bridge -j fdb show dev %s: %v\n%s", v.VXLAN, err, out)
	}
	entries := make([]KernelFDBEntry, 0, len(raw))
	for _, r := range raw {
		e := KernelFDBEntry{MAC: strings.ToLower(r.MAC), Master: r.Master, State: r.State, Flags: r.Flags,
			Self:        slices.Contains(r.Flags, "self"),
			ExternLearn: slices.Contains(r.Flags, "extern_learn"),
			Static:      r.State == "permanent" || r.State == "static"}
		e.Dst, _ = netip.ParseAddr(r.Dst)
		entries = append(entries, e)
	}
	return entries
}

var vethSeq atomic.Uint32

// Veth connects two namespaces with a veth pair, addresses aAddr on a's end
// and bAddr on b's (either may be the zero Prefix: no address), both up. It
// returns the ends' names, unique within the process. It fails t when a
// command fails; the pair goes with its namespaces.
func Veth(t testing.TB, a *Netns, aAddr netip.Prefix, b *Netns, bAddr netip.Prefix) (aIf, bIf string) {
	t.Helper()
	n := vethSeq.Add(1)
	aIf, bIf = fmt.Sprintf("ve%da", n), fmt.Sprintf("ve%db", n)
	a.Run(t, "ip", "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name())
	for _, end := range []struct {
		ns   *Netns
		dev  string
		addr netip.Prefix
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if end.addr.IsValid() {
			end.ns.Run(t, ipAddrAdd(end.addr, end.dev)...)
		}
		end.ns.Run(t, "ip", "link", "set", end.dev, "up")
	}
	return aIf, bIf
}
