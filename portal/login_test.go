package portal

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xpra-edge/xpra-edge/auth"
)

// PasswordLogin logs in with every password module the portal offers, as
// an xpra login over an encrypted transport would: plaintext stores
// (sqlite, multifile, toml) by hmac, hashed ones (toml password_hash, and
// pam) by xor; a wrong password is auth.ErrFailed.
func TestPasswordLoginModules(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.sdb")
	if auth.SQLiteCLI([]string{db, "create"}, io.Discard, io.Discard) != 0 ||
		auth.SQLiteCLI([]string{db, "add", "sq", "sq-pw", "nobody", "nogroup", "tcp://127.0.0.1:1/5"}, io.Discard, io.Discard) != 0 ||
		auth.SQLiteCLI([]string{db, "add", "--hash", "sqh", "sqh-pw", "nobody", "nogroup", "tcp://127.0.0.1:1/6"}, io.Discard, io.Discard) != 0 {
		t.Fatal("cannot make the sqlite database")
	}
	mf := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(mf, []byte("mu|mu-pw|1000|1000|tcp://127.0.0.1:2/7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := []auth.User{{Name: "tu", Password: "tu-pw", Displays: []string{":8"}}, {Name: "th", PasswordHash: auth.HashPassword([]byte("th-pw")), Displays: []string{":9"}}}
	for _, tc := range []struct {
		spec, user, password string
		displays             []string
	}{
		{"sqlite,filename=" + db, "sq", "sq-pw", []string{"tcp://127.0.0.1:1/5"}},
		{"sqlite,filename=" + db, "sqh", "sqh-pw", []string{"tcp://127.0.0.1:1/6"}},
		{"multifile,filename=" + mf, "mu", "mu-pw", []string{"tcp://127.0.0.1:2/7"}},
		{"toml", "tu", "tu-pw", []string{":8"}},
		{"toml", "th", "th-pw", []string{":9"}},
	} {
		sp, err := auth.ParseSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		a, err := auth.New(sp, auth.Options{Users: users})
		if err != nil {
			t.Fatal(err)
		}
		tr := auth.Transport{Kind: "https", Encrypted: true, Remote: "192.0.2.1:1"}
		id, err := PasswordLogin(context.Background(), a, tc.user, tc.password, tr)
		if err != nil {
			t.Errorf("%s %s: %v", sp.Name, tc.user, err)
			continue
		}
		if id.Username != tc.user || !reflect.DeepEqual(id.Displays, tc.displays) {
			t.Errorf("%s %s: identity %+v", sp.Name, tc.user, id)
		}
		if _, err := PasswordLogin(context.Background(), a, tc.user, tc.password+"x", tr); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("%s %s, wrong password: %v", sp.Name, tc.user, err)
		}
		if _, err := PasswordLogin(context.Background(), a, tc.user, "", tr); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("%s %s, empty password: %v", sp.Name, tc.user, err)
		}
	}
}
