package bareudp

import (
	"net/netip"
	"slices"
)

// routeTable is an immutable longest-prefix-match table from inner
// destination prefixes to label stacks. Writers build a new table and swap
// it in; the transmit path reads a snapshot without locks.
type routeTable struct {
	v4, v6 lpm
}

// lpm is one family's table: the routes by prefix, and the prefix lengths
// in use, longest first, so that a lookup probes one map entry per length.
type lpm struct {
	routes map[netip.Prefix][]Label
	lens   []int
}

func (t *routeTable) family(a netip.Addr) *lpm {
	if a.Is4() {
		return &t.v4
	}
	return &t.v6
}

// lookup returns the label stack of the longest prefix containing dst.
func (t *routeTable) lookup(dst netip.Addr) ([]Label, bool) {
	dst = dst.Unmap()
	f := t.family(dst)
	for _, n := range f.lens {
		p, err := dst.Prefix(n)
		if err != nil {
			continue
		}
		if l, ok := f.routes[p]; ok {
			return l, true
		}
	}
	return nil, false
}

// with returns a copy of t with p mapped to labels. p must be masked.
func (t *routeTable) with(p netip.Prefix, labels []Label) *routeTable {
	n := t.clone()
	f := n.family(p.Addr())
	f.routes[p] = labels
	f.reindex()
	return n
}

// without returns a copy of t without p, and whether p was there.
func (t *routeTable) without(p netip.Prefix) (*routeTable, bool) {
	if _, ok := t.family(p.Addr()).routes[p]; !ok {
		return t, false
	}
	n := t.clone()
	f := n.family(p.Addr())
	delete(f.routes, p)
	f.reindex()
	return n, true
}

func (t *routeTable) list() []Route {
	var out []Route
	for _, f := range []*lpm{&t.v4, &t.v6} {
		for p, l := range f.routes {
			out = append(out, Route{Prefix: p, Labels: slices.Clone(l)})
		}
	}
	return out
}

func (t *routeTable) clone() *routeTable {
	return &routeTable{v4: t.v4.clone(), v6: t.v6.clone()}
}

func (f lpm) clone() lpm {
	m := make(map[netip.Prefix][]Label, len(f.routes)+1)
	for k, v := range f.routes {
		m[k] = v
	}
	return lpm{routes: m, lens: slices.Clone(f.lens)}
}

func (f *lpm) reindex() {
	f.lens = f.lens[:0]
	for p := range f.routes {
		if !slices.Contains(f.lens, p.Bits()) {
			f.lens = append(f.lens, p.Bits())
		}
	}
	slices.SortFunc(f.lens, func(a, b int) int { return b - a })
}
