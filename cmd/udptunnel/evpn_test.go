package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

const evpnConfigYAML = `underlay: {address: 10.201.0.1}
interfaces:
  - {type: vxlan, id: 100, addresses: [192.168.100.1/24]}
evpn:
  asn: 65000
  neighbors: [{address: 10.201.0.2, asn: 65000}]
`

// TestCheckEVPN: the evpn section is checked like the rest, values by the
// evpn package itself, errors naming the key and its line.
func TestCheckEVPN(t *testing.T) {
	runCheckCases(t, []checkCase{
		{"good", evpnConfigYAML, 0, "OK"},
		{"targets", strings.Replace(evpnConfigYAML, "addresses: [192.168.100.1/24]", "addresses: [192.168.100.1/24], vxlan: {rd: \"10.201.0.1:100\", import_targets: [\"65001:100\"], export_targets: [\"65000:100\"]}", 1), 0, "OK"},
		{"learning", strings.Replace(evpnConfigYAML, "addresses: [192.168.100.1/24]", "addresses: [192.168.100.1/24], vxlan: {learning: true}", 1), 1, "line 3: interfaces[0].vxlan.learning: learning must be off with evpn"},
		{"rd without evpn", "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: vxlan, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24], vxlan: {rd: \"1.2.3.4:1\"}}\n", 1, "interfaces[0].vxlan.rd"},
		{"no remote without evpn", "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: vxlan, id: 1, addresses: [10.1.0.1/24]}\n", 1, "interfaces[0].remote"},
		{"no asn", strings.Replace(evpnConfigYAML, "asn: 65000\n", "", 1), 1, "line 4: evpn: asn 0"},
		{"no neighbors", strings.Replace(evpnConfigYAML, "  neighbors: [{address: 10.201.0.2, asn: 65000}]\n", "", 1), 1, "evpn.neighbors: at least one neighbor"},
		{"bad neighbor", strings.Replace(evpnConfigYAML, "address: 10.201.0.2", "address: peer", 1), 1, "line 6: evpn.neighbors[0].address"},
		{"neighbor without asn", strings.Replace(evpnConfigYAML, ", asn: 65000}", "}", 1), 1, "evpn: neighbors[0].asn 0"},
		{"passive without listener", strings.Replace(evpnConfigYAML, "asn: 65000}", "asn: 65000, passive: true}", 1), 1, "evpn: neighbors[0].passive"},
		{"bad target", strings.Replace(evpnConfigYAML, "addresses: [192.168.100.1/24]", "addresses: [192.168.100.1/24], vxlan: {import_targets: [\"x\"]}", 1), 1, "line 3: interfaces[0].vxlan: import_targets[0] x"},
		{"one vni twice", strings.Replace(evpnConfigYAML, "addresses: [192.168.100.1/24]}", "addresses: [192.168.100.1/24]}\n  - {name: vx2, type: vxlan, id: 100, port: 8472, addresses: [192.168.101.1/24]}", 1), 1, "line 4: interfaces[1].id: vni 100 is also interfaces[0]'s"},
		{"local with evpn", strings.Replace(evpnConfigYAML, "id: 100,", "id: 100, local: 10.201.0.9,", 1), 1, "line 3: interfaces[0].local: with evpn the outer source is the VTEP address"},
	})
}

// freeTCP returns a TCP port free on addr now.
func freeTCP(t *testing.T, addr string) int {
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunEVPN runs two clients (no root: host UDP sockets on loopback)
// whose BGP sessions come up over loopback: each learns the other from
// BGP, the admin listener's /evpn and /metrics say so, and `udptunnel
// status` prints it.
func TestRunEVPN(t *testing.T) {
	bgpPort, adminA, adminB := freeTCP(t, "127.0.0.1"), freeTCP(t, "127.0.0.1"), freeTCP(t, "127.0.0.1")
	cfgA := fmt.Sprintf(`admin: {listen: 127.0.0.1:%d}
underlay: {address: 127.0.0.1}
interfaces:
  - {type: vxlan, id: 100, port: 14789, addresses: [192.168.100.1/24]}
evpn:
  asn: 65000
  listen_port: %d
  listen_addresses: [127.0.0.1]
  connect_retry: 1s
  neighbors: [{address: 127.0.0.2, asn: 65000, passive: true}]
`, adminA, bgpPort)
	cfgB := fmt.Sprintf(`admin: {listen: 127.0.0.1:%d}
underlay: {address: 127.0.0.2}
interfaces:
  - {type: vxlan, id: 100, port: 14789, addresses: [192.168.100.2/24]}
evpn:
  asn: 65000
  connect_retry: 1s
  neighbors: [{address: 127.0.0.1, asn: 65000, port: %d, local_address: 127.0.0.2}]
`, adminB, bgpPort)
	var paths [2]string
	for i, c := range []string{cfgA, cfgB} {
		paths[i] = t.TempDir() + "/c.yaml"
		if err := os.WriteFile(paths[i], []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A runs in this process, B in a child (this test binary again, see
	// TestMain): one GoBGP per process, as in production. GoBGP v4.8.0
	// keeps its route selection options in package globals that every
	// StartBgp writes, so two speakers starting at once in one process
	// race on them (see evpn's startMu).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var outA, outB syncBuffer
	go func() { done <- runWithSignals([]string{"-c", paths[0]}, io.Discard, &outA, ctx) }()
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), childRunEnv+"="+paths[1])
	child.Stdout, child.Stderr = io.Discard, &outB
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := child.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	outs := func() string { return "A:\n" + outA.String() + "\nB:\n" + outB.String() }
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("run A exited %d:\n%s", code, outs())
		}
		child.Process.Signal(syscall.SIGTERM)
		if err := child.Wait(); err != nil {
			t.Errorf("run B (child): %v\n%s", err, outs())
		}
	}()

	get := func(admin int, path string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", admin, path))
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var st evpn.Status
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := json.Unmarshal([]byte(get(adminB, "/evpn")), &st); err == nil &&
			len(st.Peers) == 1 && st.Peers[0].State == "established" && len(st.VNIs) == 1 && len(st.VNIs[0].FloodList) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never learned A from BGP: %+v\n%s", st, outs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.VNIs[0].FloodList[0].String() != "127.0.0.1" || st.VTEP.String() != "127.0.0.2" {
		t.Errorf("B's status: %+v", st)
	}
	metrics := get(adminA, "/metrics")
	for _, want := range []string{"udptunnel_evpn_sessions_up 1", "udptunnel_evpn_routes_advertised 3"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("A's /metrics lacks %q", want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "-admin", fmt.Sprintf("127.0.0.1:%d", adminB)}, &stdout, &stderr); code != 0 {
		t.Fatalf("status exited %d: %s", code, stderr.String())
	}
	t.Logf("udptunnel status:\n%s", stdout.String())
	for _, want := range []string{"127.0.0.1", "established", "flood list: [127.0.0.1]", "sessions 1/1 up"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// childRunEnv names the configuration file that a child made by a test
// runs `udptunnel run -c` on, instead of the tests (TestMain).
const childRunEnv = "UDPTUNNEL_TEST_CHILD_RUN"

// TestMain runs the tests, or, in a child a test started with
// childRunEnv set, `udptunnel run` until SIGTERM.
func TestMain(m *testing.M) {
	if path := os.Getenv(childRunEnv); path != "" {
		os.Exit(run([]string{"run", "-c", path}, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
