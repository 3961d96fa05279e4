package router

import (
	"fmt"
	"strings"
)

// Route is one entry of a route table.
//
// Matching: Host is an exact name ("desk.example.com"), a wildcard
// ("*.example.com", one or more labels) or "" (any). PathPrefix matches the
// WebSocket path on segment boundaries ("/team" matches "/team" and
// "/team/x", not "/teams"); "" matches any request, including plain xpra
// connections that have no path. Users, when set, limits the route to
// those authenticated users.
//
// Targets are display entries as in the auth stores; with none, the route
// only selects which connections may use the user's own sessions.
type Route struct {
	Name       string            `toml:"name"`
	Host       string            `toml:"host"`
	PathPrefix string            `toml:"path_prefix"`
	Users      []string          `toml:"users"`
	Targets    []string          `toml:"targets"`
	Options    map[string]string `toml:"options"`
}

// Table is an ordered route table.
//
// Precedence (most specific wins, then declaration order):
//  1. exact host over wildcard host over any host;
//  2. then the longest path prefix;
//  3. then a route limited to users over one for everybody.
//
// When Strict is set, a request that matches no route is refused
// ("session not found error", "no route for ..."), so an unknown host or
// path never falls through to the user's sessions.
type Table struct {
	Routes []Route
	Strict bool
}

// Validate reports the first problem of the table, naming the route.
func (t *Table) Validate() error {
	for i, r := range t.Routes {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("route[%d]", i)
		}
		if r.Host != "" {
			h := strings.TrimPrefix(r.Host, "*.")
			if h == "" || strings.ContainsAny(h, "*/: ") {
				return fmt.Errorf("%s: invalid host %q", name, r.Host)
			}
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			return fmt.Errorf("%s: path_prefix %q must start with /", name, r.PathPrefix)
		}
		rt := &Router{}
		for _, e := range r.Targets {
			if _, err := rt.ParseTarget(e); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// Match returns the best route for a request.
func (t *Table) Match(sni, path, user string) (Route, bool, error) {
	best, bestScore := -1, -1
	for i, r := range t.Routes {
		hs, ok := hostScore(r.Host, sni)
		if !ok || !pathMatches(r.PathPrefix, path) || !userMatches(r.Users, user) {
			continue
		}
		score := hs*1_000_000 + len(r.PathPrefix)*2
		if len(r.Users) > 0 {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best >= 0 {
		r := t.Routes[best]
		if r.Name == "" {
			r.Name = fmt.Sprintf("route[%d]", best)
		}
		return r, true, nil
	}
	if t.Strict && len(t.Routes) > 0 {
		what := "this connection"
		switch {
		case sni != "" && path != "":
			what = fmt.Sprintf("host '%s' and path '%s'", sni, path)
		case sni != "":
			what = fmt.Sprintf("host '%s'", sni)
		case path != "":
			what = fmt.Sprintf("path '%s'", path)
		}
		return Route{}, false, refuse(ReasonSessionNotFound, "no route for %s", what)
	}
	return Route{}, false, nil
}

// hostScore: 2 exact, 1 wildcard, 0 any.
func hostScore(pattern, sni string) (int, bool) {
	sni = strings.TrimSuffix(strings.ToLower(sni), ".")
	p := strings.ToLower(pattern)
	switch {
	case p == "":
		return 0, true
	case strings.HasPrefix(p, "*."):
		suffix := p[1:]
		return 1, len(sni) > len(suffix) && strings.HasSuffix(sni, suffix)
	default:
		return 2, p == sni
	}
}

func pathMatches(prefix, path string) bool {
	if prefix == "" || prefix == "/" {
		return true
	}
	if path == "" {
		return false
	}
	// Ignore a query string.
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func userMatches(users []string, user string) bool {
	if len(users) == 0 {
		return true
	}
	for _, u := range users {
		if u == user {
			return true
		}
	}
	return false
}
