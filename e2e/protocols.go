package e2e

import (
	"fmt"
	"slices"
	"strings"
)

// protocols maps a protocol's name to its TunnelFunc. Each protocol's file
// in this package registers itself from an init function, so that adding a
// protocol touches no shared list.
var protocols = map[string]TunnelFunc{}

func registerProtocol(name string, f TunnelFunc) {
	if _, dup := protocols[name]; dup {
		panic("e2e: protocol " + name + " registered twice")
	}
	protocols[name] = f
}

func init() { registerProtocol("vxlan", VXLAN) }

// Protocols returns the names of the protocols an Overlay can run, sorted.
func Protocols() []string {
	names := make([]string, 0, len(protocols))
	for name := range protocols {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Protocol returns the TunnelFunc of the protocol called name (see
// Protocols), or an error that lists the known ones.
func Protocol(name string) (TunnelFunc, error) {
	f, ok := protocols[name]
	if !ok {
		return nil, fmt.Errorf("unknown protocol %q (have %s)", name, strings.Join(Protocols(), ", "))
	}
	return f, nil
}
