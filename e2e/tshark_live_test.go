//go:build linux

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// warmSeq is the first ICMP sequence number of the pings that wait for a
// live tshark to start; rows with it or above are left out.
const warmSeq = 1000

// liveICMP is a live tshark capture of ICMP echoes in a namespace, for
// the interop tests against kernel and OVS peers.
type liveICMP struct {
	// ns and args run tshark: the interface, filters and decode options;
	// "-l", "-T fields" and one "-e" per field are added.
	ns   *e2e.Netns
	args []string
	// fields are decoded per packet; one of them must be "icmp.seq".
	fields []string
	// ping sends one echo request with sequence number seq from our stack.
	ping func(ctx context.Context, seq uint16)
	// traffic sends the echoes to capture (sequence numbers below
	// warmSeq).
	traffic func(ctx context.Context)
	// want is how many rows to wait for; timeout bounds the whole capture.
	want    int
	timeout time.Duration
}

// run captures and returns one row per packet (field name to value),
// without the warm-up. tshark announces "Capturing on" before its capture
// sees packets, so run first pings with sequence numbers from warmSeq until
// a packet shows up in tshark's live output.
func (c liveICMP) run(t *testing.T) []map[string]string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("needs tshark (Wireshark), not found in PATH")
	}
	args := append(append([]string{"tshark"}, c.args...), "-l", "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=/t")
	for _, f := range c.fields {
		args = append(args, "-e", f)
	}
	cmd := c.ns.Command(args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			row := map[string]string{}
			for i, v := range strings.Split(sc.Text(), "\t") {
				if i < len(c.fields) {
					row[c.fields[i]] = v
				}
			}
			lines <- row
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			for range lines {
			}
			cmd.Wait()
		}
	}
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var rows []map[string]string
	var log strings.Builder
	take := func(r map[string]string) {
		for _, f := range c.fields {
			fmt.Fprintf(&log, "%s\t", r[f])
		}
		log.WriteString("\n")
		if seq, err := strconv.Atoi(r["icmp.seq"]); err != nil || seq < warmSeq {
			rows = append(rows, r)
		}
	}
warm:
	for seq := uint16(warmSeq); ; seq++ {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		c.ping(pctx, seq)
		pcancel()
		select {
		case r, ok := <-lines:
			if !ok {
				t.Fatalf("tshark ended before capturing anything: %v\n%s", cmd.Wait(), stderr.String())
			}
			take(r)
			break warm
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("tshark captured nothing while we pinged:\n%s", stderr.String())
		}
	}
	// What the warm-up still has in flight arrives now or is told apart
	// by its sequence number.
	c.traffic(ctx)
	for len(rows) < c.want {
		select {
		case r, ok := <-lines:
			if !ok {
				t.Fatalf("tshark ended early (%v) after:\n%s%s", cmd.Wait(), log.String(), stderr.String())
			}
			take(r)
		case <-ctx.Done():
			t.Fatalf("tshark decoded %d of %d ICMP packets:\n%s", len(rows), c.want, log.String())
		}
	}
	stop()
	t.Logf("tshark (%s):\n%s", strings.Join(c.fields, ", "), log.String())
	return rows
}
