package stack_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

func TestCheckDeviceLimits(t *testing.T) {
	for _, tc := range []struct {
		headroom int
		mtu      uint32
		field    string // "" for valid
	}{
		{0, 0, ""}, {stack.MaxHeadroom, 68, ""}, {64, 65535, ""},
		{-1, 0, "headroom"}, {stack.MaxHeadroom + 1, 0, "headroom"},
		{0, 67, "underlay MTU"}, {0, 65536, "underlay MTU"},
	} {
		err := stack.CheckDeviceLimits(tc.headroom, tc.mtu)
		if tc.field == "" {
			if err != nil {
				t.Errorf("CheckDeviceLimits(%d, %d) = %v, want nil", tc.headroom, tc.mtu, err)
			}
			continue
		}
		if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("CheckDeviceLimits(%d, %d) = %v, want ErrInvalid naming %s", tc.headroom, tc.mtu, err, tc.field)
		}
	}
}

func TestCheckSrcPortRange(t *testing.T) {
	for _, tc := range []struct {
		min, max uint16
		ok       bool
	}{
		{0, 0, true}, {1000, 2000, true},
		{2000, 1000, false}, {1000, 1000, false}, {0, 2000, false},
	} {
		err := stack.CheckSrcPortRange(tc.min, tc.max)
		if (err == nil) != tc.ok || (err != nil && (!errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), "srcport"))) {
			t.Errorf("CheckSrcPortRange(%d, %d) = %v, want ok %v", tc.min, tc.max, err, tc.ok)
		}
	}
}
