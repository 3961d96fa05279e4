package edge

import (
	"errors"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// helloThenFinal sends first, answers the challenge with final (plus the
// response), and returns the proxy's answer.
func helloThenFinal(t *testing.T, addr string, first, final xprawire.Dict, password string) (xprawire.Caps, error) {
	t.Helper()
	c := connect(t, addr, xprawire.Rencode)
	first.Set("challenge", true)
	if err := c.Send(xprawire.Packet{"hello", first}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	p, err := c.Read(deadline)
	if err != nil {
		return xprawire.Caps{}, err
	}
	if p.Type() != "challenge" {
		return xprawire.Caps{}, errors.New("no challenge: " + p.Type())
	}
	ch, err := xpraclient.ParseChallenge(p)
	if err != nil {
		t.Fatal(err)
	}
	resp, salt, err := auth.Respond([]byte(password), ch, false)
	if err != nil {
		t.Fatal(err)
	}
	final.Set("challenge", true)
	final.Set("challenge_response", resp)
	final.Set("challenge_client_salt", salt)
	if err := c.Send(xprawire.Packet{"hello", final}); err != nil {
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

func capsWith(kv ...any) xprawire.Dict {
	d := xpraclient.BaseCaps("u")
	for i := 0; i+1 < len(kv); i += 2 {
		d.Set(kv[i].(string), kv[i+1])
	}
	return d
}

// Issue 11, item 6: the request is decided on the final hello (the one
// that answered the challenge), booleans are read with Python's truthiness
// as xpra reads them, and no request key reaches the backend. Before, the
// first hello decided, "no" was false, and a post-challenge info_request or
// stop_request went to the backend in a session's hello.
func TestRequestDecidedOnFinalHello(t *testing.T) {
	rec := startRecorder(t)
	a := tomlAuth(t, auth.User{Name: "u", Password: "p", Displays: []string{"tcp://" + rec.ln.Addr().String() + "/"}})
	addr, _ := miniProxy(t, a, Limits{})

	// A request only in the final hello is the proxy's to answer.
	got, err := helloThenFinal(t, addr, capsWith(), capsWith("info_request", true), "p")
	if err != nil {
		t.Fatalf("info in the final hello: %v", err)
	}
	if v, _ := got.Str("server.type"); v != "xpra-edge" {
		t.Errorf("info in the final hello was not answered by the proxy: %v", got)
	}
	if rec.saw("hello") {
		t.Fatalf("a final hello with info_request reached the backend: %v", rec.lastHello(t))
	}
	var de *xpraclient.DisconnectError
	for _, v := range []any{true, "x", "no", int64(1), []any{"a"}} {
		_, err = helloThenFinal(t, addr, capsWith(), capsWith("stop_request", v), "p")
		if !asDisconnect(err, &de) || de.Reasons[0] != reasonPermission {
			t.Errorf("stop_request=%#v in the final hello: %v, want %q", v, err, reasonPermission)
		}
	}
	_, err = helloThenFinal(t, addr, capsWith(), capsWith("detach_request", "yes"), "p")
	if !asDisconnect(err, &de) || de.Reasons[0] != reasonInvalidRequest {
		t.Errorf("detach_request in the final hello: %v, want %q", err, reasonInvalidRequest)
	}
	if rec.saw("hello") {
		t.Fatalf("a request reached the backend: %v", rec.lastHello(t))
	}
	// A request in the first hello only is not one: the final hello is a
	// session's.
	if _, err := helloThenFinal(t, addr, capsWith("request", "info"), capsWith(), "p"); err != nil {
		t.Fatalf("session after a first hello with a request: %v", err)
	}
	// False as Python reads it: a session, and the keys are not forwarded.
	final := capsWith("info_request", "", "stop_request", int64(0), "exit_request", false, "detach_request", []any{},
		"request", "", "stop_request_request", true, "full-version-request", true, "screenshot_request", nil)
	if _, err := helloThenFinal(t, addr, capsWith(), final, "p"); err != nil {
		t.Fatalf("session with false requests: %v", err)
	}
	fwd := rec.lastHello(t)
	for _, kv := range fwd.Dict {
		if k := keyString(kv.Key); isRequestKey(k) {
			t.Errorf("request key %q=%#v reached the backend", k, kv.Value)
		}
	}
}

func TestTruthy(t *testing.T) {
	d := xprawire.Dict{}
	for k, v := range map[string]any{"t1": true, "t2": "x", "t3": "no", "t4": "0", "t5": []byte("false"), "t6": int64(-1), "t7": 0.5, "t8": []any{0}, "t9": xprawire.Dict{{Key: "a", Value: 0}}} {
		d.Set(k, v)
	}
	for k, v := range map[string]any{"f1": false, "f2": "", "f3": []byte{}, "f4": int64(0), "f5": 0.0, "f6": []any{}, "f7": nil, "f8": xprawire.Dict{}} {
		d.Set(k, v)
	}
	c := xprawire.Caps{Dict: d}
	for _, k := range []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"} {
		if !c.Truthy(k, false) {
			t.Errorf("%s is false", k)
		}
	}
	for _, k := range []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"} {
		if c.Truthy(k, true) {
			t.Errorf("%s is true", k)
		}
	}
	if !c.Truthy("missing", true) || c.Truthy("missing", false) {
		t.Error("a missing key does not give the default")
	}
}
