package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
	"github.com/xpra-edge/xpra-edge/internal/xpraclient"
	"github.com/xpra-edge/xpra-edge/internal/xprawire"
)

// Issue 11, item 9: "please specify a display" lists display names only,
// to the client and in the log: never a backend's user, host, port or
// password, not even of an entry that does not parse. Before, it listed
// "tcp://alice@10.9.8.7:4000/..." and unparsable entries verbatim.
func TestDisplayListingShowsNamesOnly(t *testing.T) {
	secrets := []string{"alice", "bob", "s3cretpw", "hunter2", "10.9.8.7", "backend.internal", "4000", "4001", "wss", "tcp:"}
	f := newFixture(t, []auth.User{{Name: "u", Password: "p", Displays: []string{
		"tcp://alice:s3cretpw@10.9.8.7:4000/7",
		"ssl://bob@backend.internal:4001/8",
		"tcp://alice:hunter2@10.9.8.7:4000/",
		"wss://backend.internal/some/path",
		"tcp://bob:hunter2@[::1", // does not parse
	}}}, nil)
	c := xpraclient.New(f.dial(), xprawire.Rencode)
	_, err := c.Hello(xpraclient.BaseCaps("u"), []byte("p"), true, false, 10*time.Second)
	var de *xpraclient.DisconnectError
	if !asDisconnect(err, &de) {
		t.Fatalf("login without a display: %v", err)
	}
	told := strings.Join(de.Reasons, " | ")
	if !strings.Contains(told, "please specify a display") || !strings.Contains(told, ":7") || !strings.Contains(told, ":8") {
		t.Fatalf("the client was told %q", told)
	}
	for _, s := range secrets {
		if strings.Contains(told, s) {
			t.Errorf("the client was told %q: it contains %q", told, s)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, line := range strings.Split(f.log.String(), "\n") {
		if !strings.Contains(line, "please specify a display") {
			continue
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("the log line %q contains %q", line, s)
			}
		}
	}
}

// Nor does a client that asks only where its session is (connect=false:
// `xpra start --attach=no`, connect tests) learn the backend: it is told
// the display name. Before, the answer's "display" was the backend URL
// with its user, host and port.
func TestLocatedSessionShowsDisplayNameOnly(t *testing.T) {
	for entry, want := range map[string]string{
		"tcp://alice:s3cretpw@10.9.8.7:4000/7": ":7",
		"ssl://bob@backend.internal:4001/":     "",
	} {
		f := newFixture(t, []auth.User{{Name: "u", Password: "p", Displays: []string{entry}}}, nil)
		caps := xpraclient.BaseCaps("u")
		caps.Set("connect", false)
		got, err := xpraclient.New(f.dial(), xprawire.Rencode).Hello(caps, []byte("p"), true, false, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", entry, err)
		}
		if d, _ := got.Str("display"); d != want {
			t.Errorf("%s: told display %q, want %q", entry, d, want)
		}
	}
}
