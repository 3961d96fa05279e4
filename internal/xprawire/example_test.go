package xprawire_test

import (
	"bufio"
	"bytes"
	"fmt"

	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// A peer's packets are written with a PacketWriter; a relay forwards records
// untouched with FrameReader/FrameWriter and decodes only the types it must.
func Example() {
	var wire bytes.Buffer
	pw := xprawire.NewPacketWriter(xprawire.NewFrameWriter(&wire), xprawire.Rencode)
	pw.Compressor, pw.CompressionLevel = xprawire.LZ4, 1
	_ = pw.WritePacket(xprawire.Packet{"hello", xprawire.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}}})
	_ = pw.WritePacket(xprawire.Packet{"ping", 1234})

	var out bytes.Buffer
	fr := xprawire.NewFrameReader(bufio.NewReader(&wire))
	fw := xprawire.NewFrameWriter(&out)
	for {
		h, payload, err := fr.Next()
		if err != nil {
			break
		}
		typ, _ := xprawire.PeekType(h, payload)
		if typ == "hello" {
			p, _ := xprawire.DecodeMain(h, payload)
			caps := xprawire.Caps{Dict: p[1].(xprawire.Dict)}
			v, _ := caps.Str("version")
			fmt.Println("hello from", v, "rencode:", caps.Bool("rencode", false))
		}
		_ = fw.WriteFrame(h, payload) // forwarded unchanged
	}

	pr := xprawire.NewPacketReader(bufio.NewReader(&out))
	for {
		p, _, err := pr.ReadPacket()
		if err != nil {
			break
		}
		fmt.Println(p.Type())
	}
	// Output:
	// hello from 3.1.3 rencode: true
	// hello
	// ping
}
