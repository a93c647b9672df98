package stack_test

import (
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

func TestRegistry(t *testing.T) {
	var r stack.Registry[uint32, *int]
	if r.Get(1) != nil || len(r.All()) != 0 {
		t.Fatal("zero Registry is not empty")
	}
	a, b := new(int), new(int)
	r.Set(1, a)
	snap := r.All()
	r.Set(2, b)
	r.Set(3, a)
	if r.Get(1) != a || r.Get(2) != b || r.Get(3) != a || len(r.All()) != 3 {
		t.Fatalf("after Set: %v", r.All())
	}
	if len(snap) != 1 {
		t.Errorf("an earlier snapshot changed: %v", snap)
	}
	r.DeleteValue(a)
	if r.Get(1) != nil || r.Get(3) != nil || r.Get(2) != b || len(r.All()) != 1 {
		t.Errorf("after DeleteValue: %v", r.All())
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.Get(2) }); n != 0 {
		t.Errorf("Get allocates %v times, want 0", n)
	}
}
