package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustNew(t *testing.T, spec string, opts Options) Authenticator {
	t.Helper()
	sp, err := ParseSpec(spec)
	if err != nil {
		t.Fatalf("ParseSpec(%q): %v", spec, err)
	}
	a, err := New(sp, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", spec, err)
	}
	return a
}

func TestParseSpec(t *testing.T) {
	good := []struct {
		in   string
		name string
		opts map[string]string
	}{
		{"allow", "allow", map[string]string{}},
		{"sqlite,filename=x", "sqlite", map[string]string{"filename": "x"}},
		{"sqlite:filename=x", "sqlite", map[string]string{"filename": "x"}},
		{"password:value=x,foo=bar", "password", map[string]string{"value": "x", "foo": "bar"}},
		{"multifile:filename=/a:b/c", "multifile", map[string]string{"filename": "/a:b/c"}},
		{"password,value=a=b", "password", map[string]string{"value": "a=b"}},
		{"PAM,service=xpra,", "pam", map[string]string{"service": "xpra"}},
		{" none ", "none", map[string]string{}},
		{"password:value=", "password", map[string]string{"value": ""}},
	}
	for _, g := range good {
		sp, err := ParseSpec(g.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", g.in, err)
			continue
		}
		if sp.Name != g.name || !reflect.DeepEqual(sp.Options, g.opts) {
			t.Errorf("ParseSpec(%q) = %+v", g.in, sp)
		}
	}
	for _, b := range []string{"", ",x=y", ":", "sqlite,filename", "sqlite,=x", "sqlite,a=1,a=2", "sq lite", "a/b"} {
		if _, err := ParseSpec(b); !errors.Is(err, ErrSpec) {
			t.Errorf("ParseSpec(%q) = %v, want ErrSpec", b, err)
		}
	}
	if s := (Spec{Name: "password", Options: map[string]string{"value": "hunter2", "uid": "1"}}).String(); strings.Contains(s, "hunter2") || s != "password,uid=1,value=***" {
		t.Errorf("Spec.String() = %q", s)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"allow", "sqlite,filename=x", "sqlite:filename=x", "password:value=x,foo=bar", ",,", "a,b=c=d,,e=", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("error does not wrap ErrSpec: %v", err)
			}
			return
		}
		if sp.Name == "" || strings.ContainsAny(sp.Name, ",:") {
			t.Fatalf("bad name %q", sp.Name)
		}
		// The canonical form parses back to the same spec.
		var b strings.Builder
		b.WriteString(sp.Name)
		for k, v := range sp.Options {
			if strings.Contains(v, ",") {
				t.Fatalf("value with a comma: %q", v)
			}
			b.WriteString("," + k + "=" + v)
		}
		again, err := ParseSpec(b.String())
		if err != nil {
			t.Fatalf("reparse %q: %v", b.String(), err)
		}
		if again.Name != sp.Name || len(again.Options) != len(sp.Options) {
			t.Fatalf("reparse %q = %+v, want %+v", b.String(), again, sp)
		}
		// New never panics on any spec.
		_, _ = New(sp, Options{})
	})
}

func TestNewErrors(t *testing.T) {
	for _, name := range []string{"file", "env", "exec"} {
		_, err := New(Spec{Name: name, Options: map[string]string{"filename": "x"}}, Options{})
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != name+" authentication is refused for the proxy: one password would reach every user's sessions" {
			t.Errorf("New(%s) = %v", name, err)
		}
	}
	bad := []string{
		"ldap", "fail", "kerberos-password", "hosts", "peercred", "nonsense",
		"allow,filename=x", "none,value=x", "reject,uid=1", "password", "password,value=",
		"password,value=x,filename=y", "multifile", "multifile,filename=x,value=y",
		"sqlite,filename=", "sqlite,filename=x,password_query=y", "toml,filename=x", "pam,check-account=maybe", "pam,foo=bar",
	}
	for _, s := range bad {
		sp, err := ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(sp, Options{}); !errors.Is(err, ErrSpec) {
			t.Errorf("New(%q) = %v, want ErrSpec", s, err)
		}
	}
}

func TestModuleTable(t *testing.T) {
	dir := t.TempDir()
	mf := filepath.Join(dir, "multi.txt")
	if err := os.WriteFile(mf, []byte("# users\nalice|wonder|1000|1000|:10,:11|K=V|compression=0\nbob|builder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "users.sdb")
	if code := SQLiteCLI([]string{db, "create"}, &strings.Builder{}, os.Stderr); code != 0 {
		t.Fatal("create")
	}
	if code := SQLiteCLI([]string{db, "add", "carol", "pw1", "nobody", "nobody", "tcp://u:p@127.0.0.1:10000/"}, &strings.Builder{}, os.Stderr); code != 0 {
		t.Fatal("add")
	}
	users := Options{Users: []User{{Name: "dave", Password: "plain", Displays: []string{":5"}, UID: "nobody", GID: "nobody"}}}
	cases := []struct {
		spec, user, pw string
		ok             bool
		challenge      bool
		module         string
		local          bool
		displays       []string
		uid            string
	}{
		{"allow", "anyone", "whatever", true, true, "allow", true, nil, ""},
		{"allow,uid=1234,gid=55", "anyone", "x", true, true, "allow", true, nil, "1234"},
		{"none", "anyone", "", true, false, "none", true, nil, ""},
		{"reject", "anyone", "x", false, true, "", false, nil, ""},
		{"password,value=s3cret", "u", "s3cret", true, true, "password", true, nil, ""},
		{"password,value=s3cret", "u", "S3cret", false, true, "", false, nil, ""},
		{"multifile,filename=" + mf, "alice", "wonder", true, true, "multifile", false, []string{":10", ":11"}, "1000"},
		{"multifile,filename=" + mf, "alice", "builder", false, true, "", false, nil, ""},
		{"multifile,filename=" + mf, "bob", "builder", true, true, "multifile", false, nil, ""},
		{"multifile,filename=" + mf, "eve", "wonder", false, true, "", false, nil, ""},
		{"multifile,filename=" + filepath.Join(dir, "missing"), "alice", "wonder", false, true, "", false, nil, ""},
		{"sqlite,filename=" + db, "carol", "pw1", true, true, "sqlite", false, []string{"tcp://u:p@127.0.0.1:10000/"}, "nobody"},
		{"sqlite:filename=" + db, "carol", "pw2", false, true, "", false, nil, ""},
		{"sqlite:filename=" + db, "nobody-here", "pw1", false, true, "", false, nil, ""},
		{"sqlite:filename=" + filepath.Join(dir, "nodb"), "carol", "pw1", false, true, "", false, nil, ""},
		{"toml", "dave", "plain", true, true, "toml", false, []string{":5"}, "nobody"},
		{"toml", "dave", "wrong", false, true, "", false, nil, ""},
		{"toml", "mallory", "plain", false, true, "", false, nil, ""},
	}
	for _, c := range cases {
		a := mustNew(t, c.spec, users)
		l := a.Begin(c.user, plainTCP)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil {
			t.Errorf("%s/%s: challenge: %v", c.spec, c.user, err)
			continue
		}
		if (ch != nil) != c.challenge {
			t.Errorf("%s: challenge = %v, want %v", c.spec, ch != nil, c.challenge)
			continue
		}
		var id Identity
		if ch != nil {
			if ch.Digest != "hmac+sha512" || ch.SaltDigest != "hmac+sha512" || ch.Prompt != "password" || len(ch.Salt) != 64 {
				t.Errorf("%s: challenge %+v", c.spec, ch)
			}
			resp, cs, rerr := Respond([]byte(c.pw), *ch, false)
			if rerr != nil {
				t.Fatal(rerr)
			}
			id, err = l.Verify(context.Background(), resp, cs)
		} else {
			id, err = l.Verify(context.Background(), nil, nil)
		}
		if c.ok != (err == nil) {
			t.Errorf("%s user %s pw %q: err = %v, want ok=%v", c.spec, c.user, c.pw, err, c.ok)
			continue
		}
		if !c.ok {
			if strings.Contains(err.Error(), c.pw) && c.pw != "" {
				t.Errorf("%s: error mentions the password: %v", c.spec, err)
			}
			if !strings.Contains(c.spec, "missing") && !strings.Contains(c.spec, "nodb") && !errors.Is(err, ErrFailed) {
				t.Errorf("%s: credential failure does not wrap ErrFailed: %v", c.spec, err)
			}
			continue
		}
		if id.Module != c.module || id.Username != c.user || id.LocalSessions != c.local || !reflect.DeepEqual(id.Displays, c.displays) || id.UID != c.uid {
			t.Errorf("%s: identity %+v", c.spec, id)
		}
	}
}

func TestMultifileIdentity(t *testing.T) {
	dir := t.TempDir()
	mf := filepath.Join(dir, "m")
	os.WriteFile(mf, []byte("alice|pw|nobody|nobody|:1, tcp://h:1/ ,|A=1;B=x=y;bad|compression=0;password=back\n"), 0o600)
	a := mustNew(t, "multifile,filename="+mf, Options{})
	id, err := doLogin(t, a, "alice", "pw", plainTCP)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Username: "alice", Module: "multifile", UID: "nobody", GID: "nobody", Displays: []string{":1", "tcp://h:1/"},
		Env: map[string]string{"A": "1", "B": "x=y"}, SessionOptions: map[string]string{"compression": "0", "password": "back"}}
	if !reflect.DeepEqual(id, want) {
		t.Fatalf("identity\n got %+v\nwant %+v", id, want)
	}
	// Read live: a changed file is seen on the next login.
	os.WriteFile(mf, []byte("alice|new\n"), 0o600)
	if _, err := doLogin(t, a, "alice", "pw", plainTCP); !errors.Is(err, ErrFailed) {
		t.Fatalf("old password after the change: %v", err)
	}
	if _, err := doLogin(t, a, "alice", "new", plainTCP); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestOneTimeUse(t *testing.T) {
	for _, spec := range []string{"allow", "password,value=pw"} {
		a := mustNew(t, spec, Options{})
		l := a.Begin("u", plainTCP)
		ch, err := l.Challenge(xpraDigests, xpraSaltDigests)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Challenge(xpraDigests, xpraSaltDigests); err == nil {
			t.Errorf("%s: a second challenge on one login", spec)
		}
		resp, cs, _ := Respond([]byte("pw"), *ch, false)
		if _, err := l.Verify(context.Background(), resp, cs); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		// The same login cannot be verified again.
		if _, err := l.Verify(context.Background(), resp, cs); !errors.Is(err, ErrFailed) {
			t.Errorf("%s: second verify: %v", spec, err)
		}
		// Replaying the pair on another login (another salt) fails.
		l2 := a.Begin("u", plainTCP)
		if _, err := l2.Challenge(xpraDigests, xpraSaltDigests); err != nil {
			t.Fatal(err)
		}
		if _, err := l2.Verify(context.Background(), resp, cs); spec != "allow" && !errors.Is(err, ErrFailed) {
			t.Errorf("%s: replay on a new login: %v", spec, err)
		}
		// Even with the same server salt (forced here) the pair is refused:
		// the combined salt was used already.
		l3 := a.Begin("u", plainTCP).(*login)
		if _, err := l3.Challenge(xpraDigests, xpraSaltDigests); err != nil {
			t.Fatal(err)
		}
		l3.salt = ch.Salt
		if _, err := l3.Verify(context.Background(), resp, cs); !errors.Is(err, ErrFailed) {
			t.Errorf("%s: replay with the same server salt: %v", spec, err)
		}
	}
	// A failed verify also consumes the login.
	a := mustNew(t, "password,value=pw", Options{})
	l := a.Begin("u", plainTCP)
	ch, _ := l.Challenge(xpraDigests, xpraSaltDigests)
	bad, bcs, _ := Respond([]byte("nope"), *ch, false)
	if _, err := l.Verify(context.Background(), bad, bcs); !errors.Is(err, ErrFailed) {
		t.Fatal(err)
	}
	good, gcs, _ := Respond([]byte("pw"), *ch, false)
	if _, err := l.Verify(context.Background(), good, gcs); !errors.Is(err, ErrFailed) {
		t.Fatalf("a second try on a failed login: %v", err)
	}
	// Verify before Challenge fails; none verifies once.
	if _, err := a.Begin("u", plainTCP).Verify(context.Background(), good, gcs); !errors.Is(err, ErrFailed) {
		t.Fatalf("verify before challenge: %v", err)
	}
	n := mustNew(t, "none", Options{}).Begin("u", plainTCP)
	if ch, err := n.Challenge(nil, nil); ch != nil || err != nil {
		t.Fatal(ch, err)
	}
	if _, err := n.Verify(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Verify(context.Background(), nil, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("none verified twice: %v", err)
	}
}

func TestResponseForms(t *testing.T) {
	a := mustNew(t, "password,value=pw", Options{})
	// Uppercase hex is not what xpra sends: refused.
	l := a.Begin("u", plainTCP)
	ch, _ := l.Challenge(xpraDigests, xpraSaltDigests)
	resp, cs, _ := Respond([]byte("pw"), *ch, false)
	if _, err := l.Verify(context.Background(), []byte(strings.ToUpper(string(resp))), cs); !errors.Is(err, ErrFailed) {
		t.Fatalf("uppercase response: %v", err)
	}
	// No client salt: the server salt alone (xpra 3.1 servers allow it).
	l = a.Begin("u", plainTCP)
	ch, _ = l.Challenge(xpraDigests, xpraSaltDigests)
	r, _ := hmacHex(ch.Digest, []byte("pw"), ch.Salt)
	if _, err := l.Verify(context.Background(), r, nil); err != nil {
		t.Fatalf("response without a client salt: %v", err)
	}
	// Empty response.
	l = a.Begin("u", plainTCP)
	l.Challenge(xpraDigests, xpraSaltDigests)
	if _, err := l.Verify(context.Background(), nil, cs); !errors.Is(err, ErrFailed) {
		t.Fatalf("empty response: %v", err)
	}
}

// TestWeakDigestsSwitch: with AllowWeakDigests a client offering only md5
// or sha1 logs in, as with xpra.
func TestWeakDigestsSwitch(t *testing.T) {
	AllowWeakDigests(true)
	t.Cleanup(func() { AllowWeakDigests(false) })
	a := mustNew(t, "password,value=pw", Options{})
	for _, d := range [][]string{{"hmac"}, {"hmac+md5"}, {"hmac+sha1"}} {
		ch, err := a.Begin("u", plainTCP).Challenge(d, d)
		if err != nil || ch.Digest != d[0] {
			t.Fatalf("%v: %+v %v", d, ch, err)
		}
		if _, err := doLoginWith(t, a, "pw", d, d); err != nil {
			t.Fatalf("%v: %v", d, err)
		}
	}
}

func TestChallengeDigests(t *testing.T) {
	a := mustNew(t, "password,value=pw", Options{})
	cases := []struct {
		d, sd       []string
		digest, sdw string
		refused     bool
	}{
		{xpraDigests, xpraSaltDigests, "hmac+sha512", "hmac+sha512", false},
		// md5 and sha1 are refused unless allowed (see TestWeakDigestsSwitch)
		{[]string{"hmac"}, []string{"hmac"}, "", "", true},
		{[]string{"hmac+sha256", "xor"}, []string{"hmac+sha1"}, "", "", true},
		{[]string{"hmac+sha1", "hmac+sha256"}, []string{"hmac+md5", "hmac+sha224"}, "hmac+sha256", "hmac+sha224", false},
		{[]string{"xor", "des"}, xpraSaltDigests, "", "", true},
		{xpraDigests, []string{"xor", "des"}, "", "", true},
		{nil, nil, "", "", true},
	}
	for _, c := range cases {
		ch, err := a.Begin("u", plainTCP).Challenge(c.d, c.sd)
		var re *RefusedError
		if c.refused {
			if !errors.As(err, &re) {
				t.Errorf("%v/%v: %v, want a refusal", c.d, c.sd, err)
			}
			continue
		}
		if err != nil || ch.Digest != c.digest || ch.SaltDigest != c.sdw {
			t.Errorf("%v/%v: %+v %v", c.d, c.sd, ch, err)
			continue
		}
		if _, err := doLoginWith(t, a, "pw", c.d, c.sd); err != nil {
			t.Errorf("%v/%v: login: %v", c.d, c.sd, err)
		}
	}
}

func doLoginWith(t *testing.T, a Authenticator, pw string, d, sd []string) (Identity, error) {
	l := a.Begin("u", plainTCP)
	ch, err := l.Challenge(d, sd)
	if err != nil {
		return Identity{}, err
	}
	resp, cs, err := Respond([]byte(pw), *ch, false)
	if err != nil {
		return Identity{}, err
	}
	return l.Verify(context.Background(), resp, cs)
}

func TestConcurrentLogins(t *testing.T) {
	a := mustNew(t, "password,value=pw", Options{})
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		go func() {
			_, err := doLogin(t, a, "u", "pw", plainTCP)
			errs <- err
		}()
	}
	for i := 0; i < 64; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
