//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// OVS is a private Open vSwitch instance made for one test: its own
// database (ovsdb-tool create with the vswitch schema), ovsdb-server and
// ovs-vswitchd, all started inside a network namespace the test made, so
// that the ports of its bridges and the AF_PACKET sockets it opens on them
// are there and nowhere else. Its files (database, control sockets, pid
// files, logs) live in a temporary directory that OVS_RUNDIR, OVS_DBDIR,
// OVS_LOGDIR and OVS_SYSCONFDIR point at; no system service, system
// database or system directory is used or touched.
//
// It is meant for bridges with datapath_type=netdev, Open vSwitch's
// userspace datapath, which needs no kernel module: it speaks VXLAN, Geneve
// and GRE by itself ("native tunneling") over the ports of a second bridge
// that holds the underlay address. The Debian package is openvswitch-switch.
type OVS struct {
	ns  *Netns
	dir string
	env []string
	db  *daemon // ovsdb-server
	sw  *daemon // ovs-vswitchd
}

// ovsTools are the commands NewOVS needs.
var ovsTools = []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"}

// ovsSchemaPaths are where distributions put the vswitch database schema;
// OVS_PKGDATADIR, if set, is tried first.
var ovsSchemaPaths = []string{"/usr/share/openvswitch/vswitch.ovsschema", "/usr/local/share/openvswitch/vswitch.ovsschema"}

// NewOVS starts a private Open vSwitch instance in ns and stops it when t
// and its subtests end, whether they pass or fail: both daemons get SIGTERM
// (then SIGKILL after a grace period), are waited for, and the directory is
// removed. Stopping happens before ns is deleted, since ns was made first.
// NewOVS skips t, saying what is missing, when a tool of Open vSwitch or its
// schema is not installed (Debian: apt-get install openvswitch-switch).
func NewOVS(t testing.TB, ns *Netns) *OVS {
	t.Helper()
	for _, tool := range ovsTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("Open vSwitch: needs %s (Debian package openvswitch-switch), not found in PATH", tool)
		}
	}
	schema := ""
	paths := ovsSchemaPaths
	if d := os.Getenv("OVS_PKGDATADIR"); d != "" {
		paths = append([]string{filepath.Join(d, "vswitch.ovsschema")}, paths...)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			schema = p
			break
		}
	}
	if schema == "" {
		t.Skipf("Open vSwitch: no vswitch.ovsschema in %s (Debian package openvswitch-common)", strings.Join(paths, ", "))
	}

	// A short directory of our own rather than t.TempDir: control socket
	// paths must fit in sun_path (108 bytes), and long test names would
	// not.
	dir, err := os.MkdirTemp("", "ovs")
	if err != nil {
		t.Fatal(err)
	}
	o := &OVS{ns: ns, dir: dir}
	o.env = append(os.Environ(),
		"OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir, "OVS_SYSCONFDIR="+dir)
	t.Cleanup(func() {
		if err := o.stop(); err != nil {
			t.Errorf("stopping Open vSwitch: %v", err)
		}
		if t.Failed() {
			t.Logf("ovs-vswitchd.log:\n%s", o.Log())
		}
		os.RemoveAll(dir)
	})

	if out, err := exec.Command("ovsdb-tool", "create", o.path("conf.db"), schema).CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool create: %v\n%s", err, out)
	}
	if o.db, err = o.start("ovsdb-server", "ovsdb-server", o.path("conf.db"), "--remote=punix:"+o.path("db.sock"),
		"--pidfile="+o.path("ovsdb-server.pid"), "--unixctl="+o.path("ovsdb-server.ctl"),
		"--log-file="+o.path("ovsdb-server.log"), "-vconsole:off", "--no-chdir"); err != nil {
		t.Fatal(err)
	}
	if err := o.waitFor(o.db, "db.sock"); err != nil {
		t.Fatalf("%v\n%s", err, o.readFile("ovsdb-server.log"))
	}
	o.Vsctl(t, "--no-wait", "init")
	// ovs-ctl, which the system service uses, runs ovs-vswitchd at nice
	// -10 (--ovs-vswitchd-priority): its main thread also reads the
	// AF_PACKET sockets of a netdev bridge's system ports, whose 208 KiB
	// receive buffers overflow within milliseconds when it is not
	// scheduled (see TestOVS).
	if o.sw, err = o.start("ovs-vswitchd", "nice", "-n", "-10", "ovs-vswitchd", "unix:"+o.path("db.sock"),
		"--pidfile="+o.path("ovs-vswitchd.pid"), "--unixctl="+o.path("ovs-vswitchd.ctl"),
		"--log-file="+o.path("ovs-vswitchd.log"), "-vconsole:off", "--no-chdir"); err != nil {
		t.Fatal(err)
	}
	if err := o.waitFor(o.sw, "ovs-vswitchd.ctl"); err != nil {
		t.Fatalf("%v\n%s", err, o.Log())
	}
	// ovs-vsctl without --no-wait returns once ovs-vswitchd has applied
	// the configuration: this one proves it has connected.
	o.Vsctl(t, "set", "Open_vSwitch", ".", "external_ids:udptunnel-test="+ns.Name())
	return o
}

func (o *OVS) path(name string) string { return filepath.Join(o.dir, name) }

// daemon is one of the instance's two processes.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
	err  error         // Wait's error, once done
}

// start starts a daemon (command line argv) in the foreground (no --detach): it is our child,
// and we signal and reap it ourselves. Its console log is off; its log
// file has everything.
func (o *OVS) start(name string, argv ...string) (*daemon, error) {
	d := &daemon{name: name, cmd: o.Command(argv...), done: make(chan struct{})}
	// Should the test binary die without its cleanups (a -timeout panic),
	// the kernel kills the daemons with it (ip netns exec and nice exec
	// the daemon, which keeps the setting).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// waitFor waits until the daemon has made the file (its socket).
func (o *OVS) waitFor(d *daemon, file string) error {
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(o.path(file)); err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("%s exited (%v) before making %s", d.name, d.err, file)
		case <-deadline:
			return fmt.Errorf("%s made no %s in 10s", d.name, file)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop ends ovs-vswitchd, then ovsdb-server: SIGTERM, SIGKILL after 5 s.
// The daemons remove their pid files and sockets as they exit.
func (o *OVS) stop() error { return stopDaemons(o.sw, o.db) }

// stopDaemons stops ds in order (nil ones skipped): SIGTERM, then SIGKILL
// after 5 s, which is an error naming the daemon.
func stopDaemons(ds ...*daemon) error {
	var errs []error
	for _, d := range ds {
		if d == nil {
			continue
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
			errs = append(errs, fmt.Errorf("%s ignored SIGTERM for 5s; killed", d.name))
		}
	}
	return errors.Join(errs...)
}

// Dir returns the instance's directory: database, sockets, pid files, logs.
func (o *OVS) Dir() string { return o.dir }

// Netns returns the namespace the instance runs in.
func (o *OVS) Netns() *Netns { return o.ns }

// Log returns ovs-vswitchd's log so far, for failure messages.
func (o *OVS) Log() string { return o.readFile("ovs-vswitchd.log") }

func (o *OVS) readFile(name string) string {
	b, err := os.ReadFile(o.path(name))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Command returns an Open vSwitch command (ovs-vsctl, ovs-ofctl,
// ovs-appctl, ...) that runs in the instance's namespace with its
// directories in the environment, so that it finds this instance: its
// bridges' OpenFlow sockets (ovs-ofctl br-int) and its daemons' control
// sockets (ovs-appctl). Vsctl, Ofctl and Appctl add the database and
// control socket.
func (o *OVS) Command(args ...string) *exec.Cmd {
	c := o.ns.Command(args...)
	c.Env = o.env
	return c
}

func (o *OVS) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := o.Command(args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// Vsctl runs ovs-vsctl against the instance's database and returns its
// output; it fails t when the command fails. Without --no-wait it returns
// once ovs-vswitchd has applied the change (or after 10 s, a failure).
func (o *OVS) Vsctl(t testing.TB, args ...string) string {
	t.Helper()
	return o.run(t, append([]string{"ovs-vsctl", "--db=unix:" + o.path("db.sock"), "--timeout=10"}, args...)...)
}

// Ofctl runs ovs-ofctl (OpenFlow: flows, TLV maps) on the instance's
// bridges, as in Ofctl(t, "add-flow", "br-int", "actions=normal").
func (o *OVS) Ofctl(t testing.TB, args ...string) string {
	t.Helper()
	return o.run(t, append([]string{"ovs-ofctl"}, args...)...)
}

// Appctl runs ovs-appctl on the instance's ovs-vswitchd, as in
// Appctl(t, "tnl/arp/show").
func (o *OVS) Appctl(t testing.TB, args ...string) string {
	t.Helper()
	return o.run(t, append([]string{"ovs-appctl", "-t", o.path("ovs-vswitchd.ctl")}, args...)...)
}
