package tunneltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Link types of the pcap files in the tunnels' testdata.
const (
	LinkTypeEthernet = 1   // LINKTYPE_ETHERNET
	LinkTypeRaw      = 101 // LINKTYPE_RAW: IPv4 or IPv6, no link header
)

// WritePcap returns a little-endian, microsecond pcap file of linkType
// holding frames, frame i stamped i seconds after the epoch (for tshark,
// and the golden files the tests write with -update and may compare byte
// for byte).
func WritePcap(linkType uint32, frames ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)     // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0)     // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 65535) // snaplen
	b = binary.LittleEndian.AppendUint32(b, linkType)
	for i, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// ParsePcap returns the frames of a pcap file (either byte order,
// microsecond or nanosecond timestamps) whose link type must be linkType.
// The frames share file's memory.
func ParsePcap(file []byte, linkType uint32) ([][]byte, error) {
	const fileHeaderLen, recordHeaderLen = 24, 16
	if len(file) < fileHeaderLen {
		return nil, errors.New("short pcap file header")
	}
	var order binary.ByteOrder
	switch magic := binary.LittleEndian.Uint32(file); magic {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap file: magic %#08x", magic)
	}
	if lt := order.Uint32(file[20:]) & 0xffff; lt != linkType {
		return nil, fmt.Errorf("link type %d, want %d", lt, linkType)
	}
	var frames [][]byte
	for rest := file[fileHeaderLen:]; len(rest) > 0; {
		if len(rest) < recordHeaderLen {
			return nil, fmt.Errorf("frame %d: short record header", len(frames)+1)
		}
		n := order.Uint32(rest[8:]) // incl_len
		rest = rest[recordHeaderLen:]
		if uint64(n) > uint64(len(rest)) {
			return nil, fmt.Errorf("frame %d: %d bytes, %d left in file", len(frames)+1, n, len(rest))
		}
		frames = append(frames, rest[:n:n])
		rest = rest[n:]
	}
	return frames, nil
}

// ReadPcap returns the frames of testdata/name, a pcap file of linkType;
// it fails tb if the file cannot be read or parsed.
func ReadPcap(tb testing.TB, name string, linkType uint32) [][]byte {
	tb.Helper()
	file, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	frames, err := ParsePcap(file, linkType)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return frames
}

// CapturedUDP is one UDP datagram of a pcap file, decoded by gopacket.
type CapturedUDP struct {
	Frame  int // 1-based, as tshark numbers frames
	Packet gopacket.Packet
	UDP    *layers.UDP
}

// ReadUDP returns the UDP datagrams to dstPort (any port if 0) in
// testdata/name, a LINKTYPE_ETHERNET pcap file.
func ReadUDP(tb testing.TB, name string, dstPort uint16) []CapturedUDP {
	tb.Helper()
	var out []CapturedUDP
	for i, data := range ReadPcap(tb, name, LinkTypeEthernet) {
		p := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.Default)
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (dstPort == 0 || uint16(udp.DstPort) == dstPort) {
			out = append(out, CapturedUDP{Frame: i + 1, Packet: p, UDP: udp})
		}
	}
	return out
}
