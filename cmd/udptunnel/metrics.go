package main

// The admin listener's /metrics: a Prometheus collector that reads the
// counters of every interface and tunnel socket at scrape time (the
// packet path only ever increments atomics), and /healthz.

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// metricSource is something whose counters the collector exports.
type metricSource struct {
	// kind is "interface" or "socket"; name labels it.
	kind, name, proto string
	counters          *stack.Counters
	// icmpErrors, for sockets, counts ICMP errors for the outer flows.
	icmpErrors func() uint64
	// fdb, for VXLAN interfaces, is the forwarding database.
	fdb *vxlan.FDB
}

// extraMetric is a counter or gauge read at scrape time from a component
// (the underlay, the proxies).
type extraMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func() float64
}

// collector exports udptunnel's counters.
type collector struct {
	sources []metricSource
	extra   []extraMetric

	rxPackets, rxBytes, txPackets, txBytes, drops, passed, icmp, completed *prometheus.Desc
	fdbEntries, fdbLearned, fdbExpired                                     *prometheus.Desc
}

func newCollector(sources []metricSource, extra []extraMetric) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("udptunnel_"+name, help, append([]string{"kind", "name", "type"}, labels...), nil)
	}
	return &collector{
		sources:    sources,
		extra:      extra,
		rxPackets:  d("rx_packets_total", "Packets received: inner frames for interfaces, datagrams for tunnel sockets."),
		rxBytes:    d("rx_bytes_total", "Bytes received."),
		txPackets:  d("tx_packets_total", "Packets sent."),
		txBytes:    d("tx_bytes_total", "Bytes sent."),
		drops:      d("drops_total", "Packets dropped, by reason.", "reason"),
		passed:     d("passed_to_udp_total", "Datagrams a tunnel socket handed to its control plane."),
		completed:  d("checksums_completed_total", "Received packets of an interface whose partial TCP/UDP checksum (left for offload by a sender on the same host) was completed."),
		icmp:       d("icmp_errors_total", "ICMP errors received for a tunnel socket's outer flows."),
		fdbEntries: d("fdb_entries", "Entries in a VXLAN interface's forwarding database (static, learned and the all-zeros default)."),
		fdbLearned: d("fdb_learned_total", "Entries a VXLAN interface's forwarding database learned from received frames."),
		fdbExpired: d("fdb_expired_total", "Learned entries a VXLAN interface's forwarding database aged out."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops, c.passed, c.icmp, c.completed, c.fdbEntries, c.fdbLearned, c.fdbExpired} {
		ch <- d
	}
	for _, e := range c.extra {
		ch <- e.desc
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sources {
		st := s.counters.Stats()
		l := []string{s.kind, s.name, s.proto}
		ch <- prometheus.MustNewConstMetric(c.rxPackets, prometheus.CounterValue, float64(st.RxPackets), l...)
		ch <- prometheus.MustNewConstMetric(c.rxBytes, prometheus.CounterValue, float64(st.RxBytes), l...)
		ch <- prometheus.MustNewConstMetric(c.txPackets, prometheus.CounterValue, float64(st.TxPackets), l...)
		ch <- prometheus.MustNewConstMetric(c.txBytes, prometheus.CounterValue, float64(st.TxBytes), l...)
		for _, r := range stack.DropReasons() {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(st.Dropped(r)), append(l, r.String())...)
		}
		if s.kind == "interface" {
			ch <- prometheus.MustNewConstMetric(c.completed, prometheus.CounterValue, float64(st.Completed), l...)
		}
		if s.kind == "socket" {
			ch <- prometheus.MustNewConstMetric(c.passed, prometheus.CounterValue, float64(st.Passed), l...)
			ch <- prometheus.MustNewConstMetric(c.icmp, prometheus.CounterValue, float64(s.icmpErrors()), l...)
		}
		if s.fdb != nil {
			fs := s.fdb.Stats()
			ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(s.fdb.Len()), l...)
			ch <- prometheus.MustNewConstMetric(c.fdbLearned, prometheus.CounterValue, float64(fs.Learned), l...)
			ch <- prometheus.MustNewConstMetric(c.fdbExpired, prometheus.CounterValue, float64(fs.Expired), l...)
		}
	}
	for _, e := range c.extra {
		ch <- prometheus.MustNewConstMetric(e.desc, e.typ, e.value())
	}
}

// metricSources lists n's interfaces and (once each) their sockets, named
// by their port (and peer, if connected).
func (n *node) metricSources() []metricSource {
	var out []metricSource
	seen := map[*stack.Socket]bool{}
	for _, f := range n.ifaces {
		out = append(out, metricSource{kind: "interface", name: f.name, proto: f.proto, counters: f.dev.Counters(), fdb: f.fdb})
		if !seen[f.sock] {
			seen[f.sock] = true
			sock := f.sock
			// A connected socket (an L2TP tunnel) shares its port with
			// the other tunnels: its peer tells it apart.
			name := fmt.Sprintf(":%d", sock.LocalAddr().Port())
			if p := sock.Config().Peer; p.IsValid() {
				name += "->" + p.String()
			}
			out = append(out, metricSource{kind: "socket", name: name, proto: f.proto,
				counters: sock.Counters(), icmpErrors: sock.ICMPErrors})
		}
	}
	return out
}

// adminHandler serves /metrics (from a registry of its own, with the Go
// runtime and process collectors) and /healthz, which answers 200 while
// healthy returns true, and routes (/evpn).
func adminHandler(c prometheus.Collector, healthy *atomic.Bool, routes map[string]http.Handler) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	for path, h := range routes {
		mux.Handle(path, h)
	}
	return mux
}
