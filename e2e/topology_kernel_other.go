//go:build !linux

package e2e

import (
	"errors"
	"strings"
)

// errNoKernelNodes is what kernel nodes give on other systems.
var errNoKernelNodes = errors.New("kernel nodes need Linux (network namespaces)")

type kernelNode struct{}

func (k *kernelNode) remove() error { return nil }

type kernelWire struct{}

func (t *Topology) kernelPrereqs(kernel []string) error {
	t.tb.Skip("e2e topology with kernel nodes " + strings.Join(kernel, ", ") + ": needs Linux (network namespaces)")
	return errNoKernelNodes
}

func (t *Topology) startKernelNode(n *Node) error        { return errNoKernelNodes }
func (t *Topology) startKernelWire(w *Wire) error        { return errNoKernelNodes }
func (t *Topology) addKernelAddress(a addressDecl) error { return errNoKernelNodes }
func (t *Topology) addKernelRoute(r routeDecl) error     { return errNoKernelNodes }
func (tu *Tunnel) startKernel() error                    { return errNoKernelNodes }
func (w *Wire) setKernelLinkUp(up bool)                  {}
func (w *Wire) closeKernel() []error                     { return nil }
func (w *Wire) kernelCounters(b *strings.Builder)        {}
