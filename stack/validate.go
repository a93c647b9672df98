package stack

import "fmt"

// MaxHeadroom is the largest DeviceConfig.Headroom NewDevice accepts: a
// device's MaxHeaderLength must fit gVisor's uint16 with room to spare.
const MaxHeadroom = 4096

// CheckDeviceLimits checks the fields every tunnel's device Config passes
// to NewDevice unchanged, with the errors a tunnel's Config validation
// reports (wrapping ErrInvalid and naming the field): headroom in
// 0..MaxHeadroom, underlay MTU 0 (the default) or in 68..65535.
func CheckDeviceLimits(headroom int, underlayMTU uint32) error {
	switch {
	case headroom < 0 || headroom > MaxHeadroom:
		return fmt.Errorf("headroom %d: %w: outside 0..%d", headroom, ErrInvalid, MaxHeadroom)
	case underlayMTU != 0 && (underlayMTU < 68 || underlayMTU > 65535):
		return fmt.Errorf("underlay MTU %d: %w: outside 68..65535", underlayMTU, ErrInvalid)
	}
	return nil
}

// CheckSrcPortRange checks an outer UDP source port range [min, max)
// ("srcport MIN MAX"): both zero (the tunnel's default range), or
// 0 < min < max.
func CheckSrcPortRange(min, max uint16) error {
	switch {
	case min > max || (min == max && min != 0):
		return fmt.Errorf("srcport %d-%d: %w: need MIN < MAX", min, max, ErrInvalid)
	case max != 0 && min == 0:
		return fmt.Errorf("srcport %d-%d: %w: port 0 cannot be sent", min, max, ErrInvalid)
	}
	return nil
}
