package main

// The evpn section: a BGP EVPN speaker (tunnels/vxlan/evpn) that fills the
// VXLAN interfaces' tables, its metrics, the admin listener's /evpn, and
// the status subcommand that reads it.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

// evpnConfig is e for a VTEP at vtep (the underlay address).
func evpnConfig(e *EVPNConfig, vtep netip.Addr, log *slog.Logger) evpn.Config {
	c := evpn.Config{
		ASN: e.ASN, RouterID: addr(e.RouterID), VTEP: vtep, ListenPort: e.ListenPort,
		HoldTime: e.HoldTime.d(), ConnectRetry: e.ConnectRetry.d(), Logger: log,
	}
	for _, a := range e.ListenAddresses {
		c.ListenAddresses = append(c.ListenAddresses, addr(a))
	}
	for _, n := range e.Neighbors {
		c.Neighbors = append(c.Neighbors, evpn.Neighbor{
			Address: addr(n.Address), ASN: n.ASN, Port: n.Port, LocalAddress: addr(n.LocalAddress),
			Passive: n.Passive, MultihopTTL: n.MultihopTTL, Password: n.Password,
		})
	}
	return c
}

func bindConfig(ic *InterfaceConfig) evpn.BindConfig {
	if v := ic.VXLAN; v != nil {
		return evpn.BindConfig{RD: v.RD, ImportTargets: v.ImportTargets, ExportTargets: v.ExportTargets}
	}
	return evpn.BindConfig{}
}

// checkEVPN checks the evpn section's values against the built node n,
// whose underlay address is the VTEP, without starting anything.
func checkEVPN(cfg *Config, l *lines, n *node) error {
	if cfg.EVPN == nil {
		return nil
	}
	ec := evpnConfig(cfg.EVPN, n.local, nil)
	if err := ec.Validate(); err != nil {
		return l.errAt(err.Error(), "evpn")
	}
	vnis := map[uint32]int{}
	for i, f := range n.ifaces {
		if f.vx == nil {
			continue
		}
		if j, dup := vnis[uint32(f.vx.VNI())]; dup {
			return l.errAt(fmt.Sprintf("vni %d is also interfaces[%d]'s: one EVPN instance per VNI", f.vx.VNI(), j), "interfaces", i, "id")
		}
		vnis[uint32(f.vx.VNI())] = i
		if err := ec.ValidateBind(f.vx.VNI(), bindConfig(f.cfg)); err != nil {
			return l.errAt(err.Error(), "interfaces", i, "vxlan")
		}
	}
	if len(vnis) == 0 {
		return l.errAt("no vxlan interface to bind", "evpn")
	}
	return nil
}

// startEVPN starts the speaker and binds every VXLAN interface of n.
func startEVPN(cfg *Config, l *lines, n *node, log *slog.Logger) (*evpn.Speaker, error) {
	sp, err := evpn.Start(evpnConfig(cfg.EVPN, n.local, log.With("component", "bgp")))
	if err != nil {
		return nil, l.errAt(err.Error(), "evpn")
	}
	for i, f := range n.ifaces {
		if f.vx == nil {
			continue
		}
		if _, err := sp.Bind(f.vx, bindConfig(f.cfg)); err != nil {
			sp.Close()
			return nil, l.errAt(err.Error(), "interfaces", i, "vxlan")
		}
		log.Info("evpn bound", "interface", f.name, "vni", f.vx.VNI())
	}
	var peers []string
	for _, p := range cfg.EVPN.Neighbors {
		peers = append(peers, p.Address)
	}
	log.Info("evpn started", "asn", cfg.EVPN.ASN, "vtep", n.local, "neighbors", peers, "listen_port", cfg.EVPN.ListenPort)
	return sp, nil
}

// evpnMetrics are the speaker's counters for /metrics.
func evpnMetrics(sp *evpn.Speaker) []extraMetric {
	if sp == nil {
		return nil
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("udptunnel_evpn_"+name, help, nil, nil)
	}
	stat := func(f func(evpn.Stats) float64) func() float64 { return func() float64 { return f(sp.Stats()) } }
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return []extraMetric{
		{d("sessions_up", "BGP sessions in Established state."), g, stat(func(s evpn.Stats) float64 { return float64(s.SessionsUp) })},
		{d("sessions", "BGP sessions configured."), g, stat(func(s evpn.Stats) float64 { return float64(s.Sessions) })},
		{d("routes_received_total", "EVPN routes received (best-path additions and replacements)."), c, stat(func(s evpn.Stats) float64 { return float64(s.RoutesReceived) })},
		{d("routes_withdrawn_total", "EVPN routes withdrawn, also by a session going down."), c, stat(func(s evpn.Stats) float64 { return float64(s.RoutesWithdrawn) })},
		{d("routes_installed_total", "FDB, flood list and proxy entries written from routes."), c, stat(func(s evpn.Stats) float64 { return float64(s.RoutesInstalled) })},
		{d("routes_removed_total", "FDB, flood list and proxy entries removed because their route went."), c, stat(func(s evpn.Stats) float64 { return float64(s.RoutesRemoved) })},
		{d("routes_ignored_total", "Received routes not used (other types, multihoming, no matching route target)."), c, stat(func(s evpn.Stats) float64 { return float64(s.RoutesIgnored) })},
		{d("routes_advertised", "Routes originated now."), g, stat(func(s evpn.Stats) float64 { return float64(s.RoutesAdvertised) })},
		{d("macs_moved_away_total", "Local MACs withdrawn because a remote VTEP advertised them with a higher MAC mobility sequence number."), c, stat(func(s evpn.Stats) float64 { return float64(s.MACsMovedAway) })},
		{d("convergence_seconds", "Time from the last session's Established to the first route from it installed."), g, stat(func(s evpn.Stats) float64 { return s.LastConvergence.Seconds() })},
	}
}

// evpnHandler serves the speaker's Status as JSON: /evpn.
func evpnHandler(sp *evpn.Speaker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(sp.Status())
	})
}

// status is the status subcommand: it reads /evpn from a running
// udptunnel's admin listener and prints the sessions and routes.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("udptunnel status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:9090", "admin listener of the running udptunnel (admin.listen)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: udptunnel status [-admin ADDR:PORT] [-json]")
		return 2
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + *admin + "/evpn")
	if err != nil {
		fmt.Fprintf(stderr, "udptunnel status: %v (is udptunnel running with admin.listen %s?)\n", err, *admin)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "udptunnel status: %s/evpn: %s %v %s\n", *admin, resp.Status, err, strings.TrimSpace(string(body)))
		return 1
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var st evpn.Status
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "udptunnel status: %s/evpn: %v\n", *admin, err)
		return 1
	}
	printStatus(stdout, &st)
	return 0
}

func printStatus(out io.Writer, st *evpn.Status) {
	fmt.Fprintf(out, "BGP AS %d, router ID %v, VTEP %v\n\n", st.ASN, st.RouterID, st.VTEP)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NEIGHBOR\tAS\tSTATE\tSINCE\tROUTES\tFIRST ROUTE")
	for _, p := range st.Peers {
		since := "-"
		if !p.Since.IsZero() {
			since = time.Since(p.Since).Truncate(time.Second).String()
		}
		fmt.Fprintf(w, "%v\t%d\t%s\t%s\t%d\t%v\n", p.Address, p.ASN, p.State, since, p.Routes, p.FirstRoute)
	}
	w.Flush()
	for _, v := range st.VNIs {
		fmt.Fprintf(out, "\nVNI %d (%s) RD %s import %s export %s\n", v.VNI, v.Device, v.RD,
			strings.Join(v.ImportTargets, ","), strings.Join(v.ExportTargets, ","))
		fmt.Fprintf(out, "  flood list: %v\n", v.FloodList)
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  OUT\tMAC\tIPS\tSEQ\tSTATE")
		for _, l := range v.Local {
			state := "advertised"
			if l.MovedAway {
				state = "moved away"
			}
			fmt.Fprintf(w, "  local\t%s\t%v\t%d\t%s\n", l.MAC, l.IPs, l.Seq, state)
		}
		w.Flush()
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  IN\tTYPE\tMAC/ORIGINATOR\tIP\tNEXT HOP\tLABEL\tSEQ\tPEER\tINSTALLED")
		for _, r := range v.Remote {
			who, ip, nh := r.MAC, "-", "-"
			if r.Type == 3 {
				who = r.Originator.String()
			}
			if r.IP.IsValid() {
				ip = r.IP.String()
			}
			if r.NextHop.IsValid() {
				nh = r.NextHop.String()
			}
			fmt.Fprintf(w, "  remote\t%d\t%s\t%s\t%s\t%d\t%d\t%v\t%v\n", r.Type, who, ip, nh, r.Label, r.Seq, r.Peer, r.Installed)
		}
		w.Flush()
	}
	s := st.Stats
	fmt.Fprintf(out, "\nsessions %d/%d up; routes received %d, withdrawn %d, installed %d, removed %d, ignored %d, advertised %d; convergence %v\n",
		s.SessionsUp, s.Sessions, s.RoutesReceived, s.RoutesWithdrawn, s.RoutesInstalled, s.RoutesRemoved, s.RoutesIgnored, s.RoutesAdvertised, s.LastConvergence)
}
