//go:build linux

package e2e

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NetnsEnv is the environment variable that tells a test binary started by
// InNetns that it is the child and which namespace it runs in.
const NetnsEnv = "UDPTUNNEL_E2E_NETNS"

// InNetns runs the calling test in a child process of the same test binary
// placed inside a fresh network namespace (made with NewNetns(t, prefix),
// loopback up), so that every socket the test opens — also those that
// libraries open on goroutines of their own, such as a BGP speaker's — lives
// there. Netns.Do cannot do that: it moves one locked thread, not the
// goroutines a library starts.
//
// In the parent (a normal run), InNetns runs
//
//	ip netns exec NS <test binary> -test.run <RunPattern(t.Name(), -test.run)> -test.v -test.count=1 -test.timeout=<left> [-test.skip <-test.skip>]
//
// with UDPTUNNEL_E2E_NETNS=NS in the child's environment, streams the
// child's output to t.Log line by line, maps the child's outcome onto t — a
// failure, or a run in which the test did not pass, becomes t.Fatalf with
// the exit status; a skip becomes t.Skip with the child's skip message —
// and returns true: the caller must return at once. The child gets no other
// flag of the parent's (-race is compiled in; -test.cover*, -test.cpu,
// -test.bench, -test.count are left out), and its timeout is the parent's
// time left less a margin, so that a hung child panics with its goroutines
// before the parent times out. The parent's -test.run still selects the
// subtests of the test (go test -run 'TestX/case' with InNetns in TestX
// runs only case in the child), and its -test.skip still skips. Should the
// parent die, the kernel kills the child.
//
// In the child, InNetns returns false and the test body runs; CurrentNetns
// returns its namespace. The namespace belongs to the parent, which deletes
// it when the test ends.
//
//	func TestPeer(t *testing.T) {
//		if e2e.InNetns(t, "ut-peer") {
//			return
//		}
//		// Here every socket is in e2e.CurrentNetns().
//	}
func InNetns(t *testing.T, prefix string) (parent bool) {
	t.Helper()
	if os.Getenv(NetnsEnv) != "" {
		return false
	}
	ns := NewNetns(t, prefix)
	ns.Run(t, "ip", "link", "set", "lo", "up")

	run := ""
	if f := flag.Lookup("test.run"); f != nil {
		run = f.Value.String()
	}
	pattern := RunPattern(t.Name(), run)
	args := []string{os.Args[0], "-test.run", pattern, "-test.v", "-test.count=1"}
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
		args = append(args, "-test.skip", f.Value.String())
	}
	if deadline, ok := t.Deadline(); ok {
		left := time.Until(deadline)
		args = append(args, fmt.Sprintf("-test.timeout=%v", left-min(left/10, 30*time.Second)))
	}
	cmd := ns.Command(args...)
	cmd.Env = append(os.Environ(), NetnsEnv+"="+ns.Name())
	// A binary built with -race sleeps 1 s before it exits, unless told
	// otherwise.
	if gorace := os.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
		cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // one stream, in order
	if err := cmd.Start(); err != nil {
		t.Fatalf("re-exec in netns %s: %v", ns.Name(), err)
	}
	var res childResult
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		res.line(t.Name(), line)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Fatalf("child in netns %s: %v (its output is above)", ns.Name(), ee)
	case err != nil:
		t.Fatalf("child in netns %s: %v", ns.Name(), err)
	case res.skipped:
		t.Skipf("in netns %s: %s", ns.Name(), res.skipMsg)
	case !res.passed:
		t.Fatalf("child in netns %s exited 0 but did not run %s (pattern %q)", ns.Name(), t.Name(), pattern)
	}
	return true
}

// CurrentNetns returns the namespace that InNetns made for the child process
// this test runs in, for example to connect it to other namespaces with
// Veth or to name it in commands. It returns nil in the parent and in
// normal runs. It is not to be deleted: the parent does that.
func CurrentNetns() *Netns {
	if name := os.Getenv(NetnsEnv); name != "" {
		return &Netns{name: name}
	}
	return nil
}

// RunPattern returns the -test.run pattern with which InNetns's child runs
// exactly the test or subtest named name (as t.Name() gives it): each
// /-separated element quoted with regexp.QuoteMeta and anchored, so that
// TestA/b+c selects neither TestAB nor TestA/bbc. run is the parent's
// -test.run ("" if none): its elements deeper than name are appended, so
// that they still select the test's subtests ("TestA", "TestA/x/y" gives
// "^TestA$/x/y").
func RunPattern(name, run string) string {
	elems := strings.Split(name, "/")
	for i, e := range elems {
		elems[i] = "^" + regexp.QuoteMeta(e) + "$"
	}
	if run != "" {
		if sub := splitRegexp(run); len(sub) > len(elems) {
			elems = append(elems, sub[len(elems):]...)
		}
	}
	return strings.Join(elems, "/")
}

// splitRegexp splits a -test.run pattern into its per-level elements the
// way package testing does: at slashes outside brackets and parentheses.
func splitRegexp(s string) []string {
	var elems []string
	brackets, parens := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			brackets++
		case ']':
			brackets = max(brackets-1, 0)
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/':
			if brackets == 0 && parens == 0 {
				elems = append(elems, s[:i])
				s, i = s[i+1:], -1
			}
		}
	}
	return append(elems, s)
}

// childResult is what the child's -test.v output says about the test.
type childResult struct {
	passed, skipped bool
	skipMsg         string
	// current is the test that the last "=== RUN|NAME|CONT" line named,
	// logged each test's log lines: a skip message comes before its
	// "--- SKIP" line, which may come after its parent's "--- PASS".
	current string
	logged  map[string][]string
}

func (r *childResult) line(name, line string) {
	l := strings.TrimSpace(line)
	switch f := strings.Fields(l); {
	case strings.HasPrefix(l, "--- PASS: "+name+" ("):
		r.passed = true
	case strings.HasPrefix(l, "--- SKIP: "+name+" ("):
		r.skipped = true
		r.skipMsg = strings.Join(r.logged[name], "\n")
	case len(f) == 3 && f[0] == "===":
		r.current = f[2]
	case strings.HasPrefix(l, "--- ") || l == "PASS" || l == "FAIL":
	default:
		if r.logged == nil {
			r.logged = make(map[string][]string)
		}
		r.logged[r.current] = append(r.logged[r.current], l)
	}
}
