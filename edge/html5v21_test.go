package edge

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// v21Hello is the hello xpra-html5 v21 sends (the caps that matter to the
// proxy, as seen from the real client in Chromium): rencodeplus, a screen
// geometry dict as "display" with no "" key, and its page URL in argv.
func v21Hello(user, pageURL string) xprawire.Dict {
	d := xprawire.Dict{}
	d.Set("version", "21")
	d.Set("client_type", "HTML5")
	d.Set("session-type", "Chrome")
	d.Set("rencodeplus", true)
	d.Set("encoders", []any{"rencodeplus"})
	d.Set("compressors", []any{"lz4", "brotli"})
	d.Set("lz4", true)
	d.Set("brotli", true)
	d.Set("username", user)
	d.Set("share", false)
	d.Set("steal", true)
	d.Set("digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "xor"})
	d.Set("salt-digest", []any{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "xor"})
	d.Set("challenge", true)
	d.Set("argv", []any{pageURL})
	d.Set("display", xprawire.Dict{
		{Key: "refresh-rate", Value: int64(-1)},
		{Key: "desktop_size", Value: []any{int64(1280), int64(800)}},
		{Key: "desktop_mode_size", Value: []any{int64(1280), int64(800)}},
		{Key: "monitors", Value: xprawire.Dict{{Key: "0", Value: xprawire.Dict{{Key: "geometry", Value: []any{int64(0), int64(0), int64(1280), int64(800)}}}}}},
	})
	return d
}

// v21Response answers a challenge the way xpra-html5 v21 does: a client
// salt of 32 random char codes 0–255 sent as a str, the combined salt is
// HMAC(key = the char codes as bytes, message = server salt) in hex, and the
// response is the hex HMAC of that hex salt keyed with the password.
func v21Response(password string, serverSalt []byte, rng *rand.Rand) (response, clientSalt string) {
	codes := make([]rune, 32)
	raw := make([]byte, 32)
	for i := range codes {
		raw[i] = byte(rng.IntN(256))
		codes[i] = rune(raw[i])
	}
	// Make sure the salt has code points past ASCII: those are what UTF-8 changes.
	codes[0], raw[0] = 0xe9, 0xe9
	m := hmac.New(sha512.New, raw)
	m.Write(serverSalt)
	hexSalt := hex.EncodeToString(m.Sum(nil))
	m = hmac.New(sha512.New, []byte(password))
	m.Write([]byte(hexSalt))
	return hex.EncodeToString(m.Sum(nil)), string(codes)
}

// v21Login runs the whole v21 login on c and returns the answer that
// follows it (the backend's hello, or an error for a disconnect).
func v21Login(t *testing.T, c *xpraclient.Conn, user, password, pageURL string) (xprawire.Caps, error) {
	t.Helper()
	if err := c.Send(xprawire.Packet{"hello", v21Hello(user, pageURL)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	p, err := c.Read(deadline)
	if err != nil {
		return xprawire.Caps{}, err
	}
	ch, err := xpraclient.ParseChallenge(p)
	if err != nil {
		t.Fatalf("expected a challenge, got %v: %v", p.Type(), err)
	}
	if ch.Digest != "hmac+sha512" || ch.SaltDigest != "hmac+sha512" {
		t.Fatalf("challenge digests %q / %q", ch.Digest, ch.SaltDigest)
	}
	resp, salt := v21Response(password, ch.Salt, rand.New(rand.NewPCG(1, 2)))
	hello := v21Hello(user, pageURL)
	hello.Set("challenge_response", resp)
	hello.Set("challenge_client_salt", salt)
	if err := c.Send(xprawire.Packet{"hello", hello}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := c.Read(deadline)
		if err != nil {
			return xprawire.Caps{}, err
		}
		switch p.Type() {
		case "hello":
			d, _ := p[1].(xprawire.Dict)
			return xprawire.Caps{Dict: d}, nil
		case "disconnect":
			return xprawire.Caps{}, &xpraclient.DisconnectError{Reasons: xpraclient.Reasons(p)}
		}
	}
}

func TestHTML5v21StringSaltLogsIn(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "anna", Password: "sésame", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, _ := miniProxy(t, a, Limits{})
	got, err := v21Login(t, connect(t, addr, xprawire.RencodePlus), "anna", "sésame", "https://edge.example/?server=edge.example&port=443&ssl=true&username=anna")
	if err != nil {
		t.Fatalf("xpra-html5 v21 login: %v", err)
	}
	if v, _ := got.Str("version"); v != "3.1.3" {
		t.Fatalf("the backend's hello did not reach the client: %v", got)
	}
	// The wrong password with the same salt arithmetic is still refused.
	_, err = v21Login(t, connect(t, addr, xprawire.RencodePlus), "anna", "sesame", "https://edge.example/")
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || de.Reasons[0] != "authentication failed" {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestStrSaltAboveLatin1IsRefused(t *testing.T) {
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://127.0.0.1:1/"}})
	addr, _ := miniProxy(t, a, Limits{})
	c := connect(t, addr, xprawire.RencodePlus)
	if err := c.Send(xprawire.Packet{"hello", v21Hello("u", "")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	hello := v21Hello("u", "")
	hello.Set("challenge_response", strings.Repeat("0", 128))
	hello.Set("challenge_client_salt", "salt with ☃ in it")
	if err := c.Send(xprawire.Packet{"hello", hello}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Read(time.Now().Add(5 * time.Second))
	if err != nil || p.Type() != "disconnect" || xpraclient.Reasons(p)[0] != "authentication failed" {
		t.Fatalf("a salt with code points above 255: %v %v", p, err)
	}
}

func TestHTML5v21PageURLDisplayChoosesTheSession(t *testing.T) {
	one, two := startRecorder(t), startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "anna", Password: "pw", Displays: []string{
		"tcp://" + one.ln.Addr().String() + "/1",
		"tcp://" + two.ln.Addr().String() + "/2",
	}})
	addr, _ := miniProxy(t, a, Limits{})

	// Without display= the user has two sessions and must name one.
	_, err := v21Login(t, connect(t, addr, xprawire.RencodePlus), "anna", "pw", "https://edge.example/?server=edge.example&port=443&username=anna")
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) || !strings.Contains(strings.Join(de.Reasons, " "), "display") {
		t.Fatalf("two sessions and no display named: %v", err)
	}
	// display= in the page URL (which v21 sends only as argv) picks one.
	if _, err := v21Login(t, connect(t, addr, xprawire.RencodePlus), "anna", "pw", "https://edge.example/?server=edge.example&port=443&username=anna&display=2"); err != nil {
		t.Fatalf("display=2 in the page URL: %v", err)
	}
	if two.lastHello(t).Dict == nil || len(one.hellos) != 0 {
		t.Fatalf("display=2 reached the wrong backend (one: %d hellos, two: %d)", len(one.hellos), len(two.hellos))
	}
	// A command line in argv is not a page URL.
	if d := argvDisplay(xprawire.Caps{Dict: xprawire.Dict{{Key: "argv", Value: []any{"xpra", "attach", "tcp://h/?display=2"}}}}); d != "" {
		t.Fatalf("argvDisplay read a command line: %q", d)
	}
}
