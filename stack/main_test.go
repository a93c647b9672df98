package stack_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/refs"
)

// TestMain turns on gVisor's reference leak checker, so that a PacketBuffer
// the framework keeps or releases twice fails the run, and checks at the end
// that no goroutine outlived the tests (each test that builds stacks also
// checks on its own, see newStack).
func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	refs.DoLeakCheck()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
