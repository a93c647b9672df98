package stack

import "sync/atomic"

// Registry is a copy-on-write map for the receive path of tunnel sockets
// (VNI, session ID or key to device): Get and All read an immutable
// snapshot with one atomic load, without a lock or an allocation; Set and
// DeleteValue copy the map and publish the copy. Writers must be
// serialized by the caller (the socket's mutex, which also guards the
// checks made before a change). The zero value is an empty Registry.
type Registry[K, V comparable] struct {
	m atomic.Pointer[map[K]V]
}

// Get returns the value of k, or the zero V.
func (r *Registry[K, V]) Get(k K) V {
	if m := r.m.Load(); m != nil {
		return (*m)[k]
	}
	var zero V
	return zero
}

// All returns the current snapshot, to range over. It must not be
// modified; it may be nil.
func (r *Registry[K, V]) All() map[K]V {
	if m := r.m.Load(); m != nil {
		return *m
	}
	return nil
}

// Set binds k to v.
func (r *Registry[K, V]) Set(k K, v V) {
	old := r.All()
	next := make(map[K]V, len(old)+1)
	for kk, vv := range old {
		next[kk] = vv
	}
	next[k] = v
	r.m.Store(&next)
}

// DeleteValue removes every key bound to v.
func (r *Registry[K, V]) DeleteValue(v V) {
	old := r.All()
	next := make(map[K]V, len(old))
	for k, vv := range old {
		if vv != v {
			next[k] = vv
		}
	}
	r.m.Store(&next)
}
