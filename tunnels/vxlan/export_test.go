package vxlan

// AgeingTimerArmed reports whether d's ageing timer (vxlan_cleanup's) is
// pending. It stops the timer to find out and re-arms it on an open device,
// which may delay the next ageing scan by up to one interval; tests only.
func AgeingTimerArmed(d *Device) bool {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.ager == nil || !d.ager.Stop() {
		return false
	}
	if !d.closed {
		d.ager.Reset(ageInterval)
	}
	return true
}
