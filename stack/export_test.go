package stack

import "time"

// SetPathMTUExpiry shortens PathMTUExpiry for a test; call the result to
// restore it.
func SetPathMTUExpiry(d time.Duration) (restore func()) {
	old := pathMTUExpiry
	pathMTUExpiry = d
	return func() { pathMTUExpiry = old }
}

// CompletePartial is completePartial, for the tests of the external test
// package.
var CompletePartial = completePartial
