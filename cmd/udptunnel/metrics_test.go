package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// scrape builds y's node over an in-memory underlay, starts its access
// listeners and returns what /metrics answers.
func scrape(t *testing.T, y string) (int, string) {
	t.Helper()
	cfg, l, err := parseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(cfg, l, memUnderlay(cfg), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	a, err := startAccess(cfg, n, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	var healthy atomic.Bool
	srv := httptest.NewServer(adminHandler(newCollector(n.metricSources(), a.metrics()), &healthy, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsL2TPTunnelsOnOnePort scrapes two L2TP tunnels to different
// remotes, whose sockets share the local port 1701: each socket must have
// series of its own, not a duplicate that fails the whole scrape.
func TestMetricsL2TPTunnelsOnOnePort(t *testing.T) {
	code, body := scrape(t, `underlay: {address: 10.201.0.1}
interfaces:
  - {type: l2tp, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}
  - {type: l2tp, id: 2, remote: 10.201.0.3, addresses: [10.2.0.1/24], l2tp: {tunnel_id: 2}}
`)
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d\n%s", code, body)
	}
	for _, w := range []string{
		`udptunnel_rx_packets_total{kind="socket",name=":1701->10.201.0.2:1701",type="l2tp"}`,
		`udptunnel_rx_packets_total{kind="socket",name=":1701->10.201.0.3:1701",type="l2tp"}`,
		`udptunnel_checksums_completed_total{kind="interface",`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
}

// TestMetricsForwardsOnOnePort scrapes a TCP and a UDP forward on the same
// host port (DNS, say): their series must differ by protocol.
func TestMetricsForwardsOnOnePort(t *testing.T) {
	code, body := scrape(t, `underlay: {address: 10.201.0.1}
interfaces:
  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24]}
forwards:
  - {proto: tcp, listen: 127.0.0.1:0, target: 192.168.42.2:53}
  - {proto: udp, listen: 127.0.0.1:0, target: 192.168.42.2:53}
  - {proto: tcp, direction: overlay-to-host, listen: 192.168.42.1:53, target: 127.0.0.1:53}
  - {proto: udp, direction: overlay-to-host, listen: 192.168.42.1:53, target: 127.0.0.1:53}
`)
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d\n%s", code, body)
	}
	for _, w := range []string{
		`udptunnel_forward_sessions_total{direction="overlay-to-host",listen="192.168.42.1:53",proto="tcp"}`,
		`udptunnel_forward_sessions_total{direction="overlay-to-host",listen="192.168.42.1:53",proto="udp"}`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
}
