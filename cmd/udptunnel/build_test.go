package main

import (
	"log/slog"
	"slices"
	"testing"
)

// TestBuildNamesStable builds one configuration twice, as `run` does (a dry
// build over memory, then the real one): the default names of the devices
// must be the same both times, and the ones `check` prints in a fresh
// process, since they name the /metrics series and the inner pcap files.
func TestBuildNamesStable(t *testing.T) {
	cfg, l, err := parseConfig([]byte(`underlay: {address: 10.201.0.1}
interfaces:
  - {type: fou, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}
  - {type: gue, remote: 10.201.0.3, addresses: [10.2.0.1/24]}
  - {type: gtpu, remote: 10.201.0.2, addresses: [10.3.0.1/24], gtpu: {sessions: [{local_teid: 1, remote_teid: 2, ue4: 10.3.0.2}]}}
  - {type: fou, id: 4, remote: 10.201.0.4, addresses: [10.4.0.1/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fou0", "gue1", "gtp0", "fou2"}
	for i := range 2 {
		n, err := buildNode(cfg, l, memUnderlay(cfg), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range n.ifaces {
			got = append(got, f.name)
		}
		n.close()
		if !slices.Equal(got, want) {
			t.Errorf("build %d: names %v, want %v", i+1, got, want)
		}
	}
}
