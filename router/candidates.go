package router

import (
	"errors"
	"sort"
	"strings"
)

// Candidates lists every target Route could pick for req when req names
// no display (a portal shows them and the user picks one): the targets of
// the matching route, else the declared entries, else the user's live
// local sessions. Declared ":N" entries without a live session are left
// out; so are the proxy's own displays. An empty list is not an error.
func (r *Router) Candidates(req Request) ([]Target, error) {
	req.Display = ""
	if r.Routes != nil {
		rt, ok, err := r.Routes.Match(req.SNI, req.Path, req.User)
		if err != nil {
			return nil, err
		}
		if ok {
			if len(rt.Targets) == 0 {
				return r.ownCandidates(req)
			}
			ts, err := r.declaredCandidates(rt.Targets, req)
			for i := range ts {
				ts[i].Route = rt.Name
				ts[i].Options = mergeOptions(req.Options, rt.Options)
				ts[i].applyPasswordOption()
			}
			return ts, err
		}
	}
	return r.ownCandidates(req)
}

func (r *Router) ownCandidates(req Request) ([]Target, error) {
	if len(req.Declared) > 0 {
		return r.declaredCandidates(req.Declared, req)
	}
	if !req.Local || r.Sessions == nil {
		return nil, nil
	}
	sessions, err := r.Sessions.LiveSessions(req.UID)
	if err != nil {
		return nil, errors.New("cannot access sessions")
	}
	var out []Target
	for _, s := range sessions {
		if r.excluded(s.Display) {
			continue
		}
		t := Target{Scheme: "unix", Address: s.Socket, Display: s.Display, Options: mergeOptions(req.Options, nil)}
		t.applyPasswordOption()
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return displayLess(out[i].Display, out[j].Display) })
	return out, nil
}

func (r *Router) declaredCandidates(entries []string, req Request) ([]Target, error) {
	var out []Target
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || r.excluded(e) {
			continue
		}
		t, err := r.ParseTarget(e)
		if err != nil {
			continue // Route refuses it when picked; a list just leaves it out
		}
		if t.Scheme == "unix" && t.Address == "" {
			lt, err := r.localByDisplay(t.Display, req)
			if err != nil {
				continue // not live
			}
			t = lt
		}
		t.Options = mergeOptions(req.Options, t.Options)
		t.applyPasswordOption()
		out = append(out, t)
	}
	return out, nil
}

// displayLess orders ":2" before ":10", names after numbers.
func displayLess(a, b string) bool {
	na, nb := strings.TrimPrefix(a, ":"), strings.TrimPrefix(b, ":")
	if len(na) != len(nb) && isDigits(na) && isDigits(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
