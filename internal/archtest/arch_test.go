package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/xpra-edge/xpra-edge"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
	Standard   bool
	Name       string
}

func list(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("only %d packages listed", len(pkgs))
	}
	return pkgs
}

// isStd reports whether an import path is the standard library.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// allowed lists, per package, the non-standard imports it may have
// (prefixes). Packages not listed are unconstrained (cmd, tests' helpers).
var allowed = map[string][]string{
	"router":            {},
	"internal/xprawire": {"github.com/pierrec/lz4/v4", "github.com/andybalholm/brotli"},
	"internal/sockdir":  {},
	"internal/wsconn":   {},
	"auth":              {"golang.org/x/crypto", "github.com/mattn/go-sqlite3", "github.com/go-ldap/ldap/v3"},
	"internal/config":   {module + "/auth", module + "/router", module + "/tlsconf", "github.com/pelletier/go-toml/v2"},
	"edge": {module + "/router", module + "/auth", module + "/internal/", "github.com/prometheus/client_golang",
		"github.com/pires/go-proxyproto", "golang.org/x/sys/unix"},
	"fleet": {module + "/auth", module + "/edge", "github.com/jackc/pgx/v5"},
	// portal: the browser portal; it imports edge for the proxy's types,
	// edge never imports it (it is given an edge.Portal).
	"portal": {module + "/edge", module + "/auth", module + "/router", "github.com/coreos/go-oidc/v3", "golang.org/x/oauth2"},
	// pgserver: pgtest's cluster without "testing" (the bench starts one)
	"internal/pgtest/pgserver": {"github.com/jackc/pgx/v5"},
	"tlsconf":                  {"github.com/caddyserver/certmagic", "github.com/mholt/acmez", "go.uber.org/zap", "github.com/libdns", "github.com/jackc/pgx/v5"},
}

func TestImportArrows(t *testing.T) {
	for _, p := range list(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		rules, constrained := allowed[rel]
		for _, imp := range p.Imports {
			if strings.Contains(imp, "certmagic") && rel != "tlsconf" {
				t.Errorf("%s imports %s: only tlsconf may import certmagic", rel, imp)
			}
			if strings.HasPrefix(imp, "github.com/jackc/pgx") && rel != "fleet" && rel != "tlsconf" && !strings.HasPrefix(rel, "internal/pgtest") {
				t.Errorf("%s imports %s: only fleet (the schema's owner) and tlsconf (its certificate storage) may use PostgreSQL", rel, imp)
			}
			if rel == "edge" && strings.HasPrefix(imp, module+"/tlsconf") {
				t.Errorf("edge imports tlsconf: it must receive a *tls.Config")
			}
			if rel == "edge" && strings.HasPrefix(imp, module+"/portal") {
				t.Errorf("edge imports portal: it must receive an edge.Portal")
			}
			if rel == "internal/pgtest/pgserver" && imp == "testing" {
				t.Errorf("internal/pgtest/pgserver imports testing: cmd/xpra-edge-bench uses it outside tests")
			}
			if !constrained || isStd(imp) {
				continue
			}
			ok := false
			for _, a := range rules {
				if strings.HasPrefix(imp, a) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which DESIGN.md does not allow it", rel, imp)
			}
		}
	}
}

func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range list(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc saying its job", p.ImportPath)
		}
	}
}
