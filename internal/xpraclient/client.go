// Package xpraclient is a minimal xpra client for requests (info, id,
// version, stop) and logins, used by xpra-edge's own control commands and
// by tests. It speaks through the wire codec and the auth package's
// response math; it never relays sessions.
package xpraclient

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Conn is one client connection.
type Conn struct {
	c  net.Conn
	pr *xprawire.PacketReader
	pw *xprawire.PacketWriter
}

// New wraps an established connection; packets are sent with enc.
func New(c net.Conn, enc xprawire.Encoding) *Conn {
	br := bufio.NewReader(c)
	return &Conn{c: c, pr: xprawire.NewPacketReader(br), pw: xprawire.NewPacketWriter(xprawire.NewFrameWriter(c), enc)}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Send writes one packet.
func (c *Conn) Send(p xprawire.Packet) error { return c.pw.WritePacket(p) }

// Read reads one packet before the deadline.
func (c *Conn) Read(deadline time.Time) (xprawire.Packet, error) {
	_ = c.c.SetReadDeadline(deadline)
	p, _, err := c.pr.ReadPacket()
	return p, err
}

// BaseCaps are the capabilities every hello of ours carries.
func BaseCaps(username string) xprawire.Dict {
	d := xprawire.Dict{}
	d.Set("version", "3.1.3")
	d.Set("rencode", true)
	d.Set("bencode", true)
	d.Set("rencodeplus", true)
	d.Set("encoders", []any{"rencodeplus", "rencode", "bencode"})
	d.Set("compressors", []any{"lz4", "zlib", "brotli"})
	d.Set("lz4", true)
	d.Set("zlib", true)
	d.Set("brotli", true)
	d.Set("digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac", "xor"})
	d.Set("salt-digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256"})
	if username != "" {
		d.Set("username", username)
	}
	return d
}

// DisconnectError is a disconnect packet received instead of an answer.
type DisconnectError struct{ Reasons []string }

func (e *DisconnectError) Error() string { return fmt.Sprintf("disconnected: %q", e.Reasons) }

// Hello sends caps and returns the peer's hello, answering one challenge
// with password (allowXOR only on encrypted or local connections).
func (c *Conn) Hello(caps xprawire.Dict, password []byte, hasPassword, allowXOR bool, timeout time.Duration) (xprawire.Caps, error) {
	deadline := time.Now().Add(timeout)
	if hasPassword {
		caps.Set("challenge", true)
	}
	if err := c.Send(xprawire.Packet{"hello", caps}); err != nil {
		return xprawire.Caps{}, err
	}
	challenged := false
	for {
		p, err := c.Read(deadline)
		if err != nil {
			return xprawire.Caps{}, err
		}
		switch p.Type() {
		case "hello":
			d, _ := p[1].(xprawire.Dict)
			return xprawire.Caps{Dict: d}, nil
		case "challenge":
			if !hasPassword {
				return xprawire.Caps{}, errors.New("the server asks for a password")
			}
			if challenged {
				return xprawire.Caps{}, errors.New("challenged twice")
			}
			challenged = true
			ch, err := ParseChallenge(p)
			if err != nil {
				return xprawire.Caps{}, err
			}
			resp, salt, err := auth.Respond(password, ch, allowXOR)
			if err != nil {
				return xprawire.Caps{}, err
			}
			caps.Set("challenge_response", resp)
			caps.Set("challenge_client_salt", salt)
			if err := c.Send(xprawire.Packet{"hello", caps}); err != nil {
				return xprawire.Caps{}, err
			}
		case "disconnect":
			return xprawire.Caps{}, &DisconnectError{Reasons: Reasons(p)}
		}
	}
}

// ParseChallenge reads a challenge packet: ["challenge", server_salt,
// auth_caps, digest, salt_digest, prompt]. Missing digests take the
// defaults of old servers (hmac, and an xor salt digest that clients
// refuse).
func ParseChallenge(p xprawire.Packet) (auth.Challenge, error) {
	if p.Type() != "challenge" || len(p) < 2 {
		return auth.Challenge{}, errors.New("not a challenge packet")
	}
	ch := auth.Challenge{Salt: bytesOf(p[1]), Digest: "hmac", SaltDigest: "xor", Prompt: "password"}
	if len(p) > 3 {
		ch.Digest = string(bytesOf(p[3]))
	}
	if len(p) > 4 {
		ch.SaltDigest = string(bytesOf(p[4]))
	}
	if len(p) > 5 {
		ch.Prompt = string(bytesOf(p[5]))
	}
	if len(ch.Salt) == 0 {
		return auth.Challenge{}, errors.New("challenge without salt")
	}
	return ch, nil
}

// Reasons returns the elements after a packet's type as strings (a
// disconnect's reason and details, str or bytes on the wire).
func Reasons(p xprawire.Packet) []string {
	r := []string{}
	for _, x := range p[1:] {
		r = append(r, string(bytesOf(x)))
	}
	return r
}

func bytesOf(v any) []byte {
	switch b := v.(type) {
	case []byte:
		return b
	case string:
		return []byte(b)
	}
	return nil
}

// Request sends a request hello ("info", "id", "version", "stop") and
// returns the answer.
func (c *Conn) Request(req string, timeout time.Duration) (xprawire.Caps, error) {
	caps := BaseCaps("")
	caps.Set("request", req)
	caps.Set(req+"_request", true)
	return c.Hello(caps, nil, false, true, timeout)
}

// Stop asks the server on c to stop and waits for its disconnect.
func (c *Conn) Stop(timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	if _, err := c.Request("stop", timeout); err != nil {
		return nil, err
	}
	if err := c.Send(xprawire.Packet{"shutdown-server"}); err != nil {
		return nil, err
	}
	for {
		p, err := c.Read(deadline)
		if err != nil {
			return nil, err
		}
		if p.Type() == "disconnect" {
			return Reasons(p), nil
		}
	}
}
