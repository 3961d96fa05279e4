package auth

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseMultifile(t *testing.T) {
	data := "" +
		"# comment|with|fields\n" +
		"\n" +
		"   \n" +
		"alice|pw1\n" + // 2 fields: no ids, no displays
		"bob|pw2|1000|100|:1,:2\n" + // 5 fields
		"carol|pw3|nobody|nogroup|tcp://u:p@h:1/|A=1;B=2|compression=0;x\n" +
		"  dave|pw|4|4|:4  \r\n" + // surrounding blanks and CRLF
		"lonely\n" + // 1 field: bad
		"|nopw\n" + // empty username: bad
		"alice|other\n" + // duplicate: bad, the first wins
		"erin||3|3\n" + // 4 fields: password empty, no ids
		"frank|a|b|c|d|e|f|g|h\n" // extra fields ignored
	got, err := ParseMultifile([]byte(data))
	want := map[string]MultifileEntry{
		"alice": {Password: "pw1", Identity: Identity{Username: "alice"}},
		"bob":   {Password: "pw2", Identity: Identity{Username: "bob", UID: "1000", GID: "100", Displays: []string{":1", ":2"}}},
		"carol": {Password: "pw3", Identity: Identity{Username: "carol", UID: "nobody", GID: "nogroup", Displays: []string{"tcp://u:p@h:1/"},
			Env: map[string]string{"A": "1", "B": "2"}, SessionOptions: map[string]string{"compression": "0"}}},
		"dave":  {Password: "pw", Identity: Identity{Username: "dave", UID: "4", GID: "4", Displays: []string{":4"}}},
		"erin":  {Password: "", Identity: Identity{Username: "erin"}},
		"frank": {Password: "a", Identity: Identity{Username: "frank", UID: "b", GID: "c", Displays: []string{"d"}, Env: nil, SessionOptions: nil}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries\n got %+v\nwant %+v", got, want)
	}
	var lines []int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var le *MultifileLineError
		if !errors.As(e, &le) {
			t.Fatalf("not a line error: %v", e)
		}
		lines = append(lines, le.Line)
	}
	if !reflect.DeepEqual(lines, []int{8, 9, 10}) {
		t.Errorf("bad lines %v (%v)", lines, err)
	}
	if strings.Contains(err.Error(), "other") || strings.Contains(err.Error(), "nopw") {
		t.Errorf("line errors quote a password: %v", err)
	}
	// An entry with an empty password can never log in.
	if got, _ := ParseMultifile(nil); len(got) != 0 {
		t.Error("empty file")
	}
}

func TestMultifileEmptyPasswordNeverMatches(t *testing.T) {
	p := &proof{kind: modeXOR, plain: nil}
	if p.check([]byte("")) {
		t.Fatal("empty xor password matched")
	}
	p = &proof{kind: modeHMAC, match: func(pw []byte) bool { return len(pw) > 0 }}
	if p.check(nil) {
		t.Fatal("empty hmac password matched")
	}
}

func FuzzParseMultifile(f *testing.F) {
	for _, s := range []string{
		"alice|pw\n", "bob|pw2|1000|100|:1,:2\n", "c|p|u|g|d|A=1;B|s=1;t\n", "#x\n\n|\n||||||||\n", "a|b\r\nа|б|в|г|д\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseMultifile(data)
		for name, e := range entries {
			if name == "" || e.Identity.Username != name || strings.Contains(name, "|") {
				t.Fatalf("bad entry %q %+v", name, e)
			}
			if strings.ContainsAny(e.Password, "|\n") {
				t.Fatalf("password with a separator")
			}
			for _, d := range e.Identity.Displays {
				if d == "" || strings.Contains(d, ",") {
					t.Fatalf("bad display %q", d)
				}
			}
		}
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var le *MultifileLineError
				if !errors.As(e, &le) || le.Line < 1 {
					t.Fatalf("bad line error %v", e)
				}
			}
		}
	})
}
