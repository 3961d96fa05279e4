package edge

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The Grafana dashboard in deploy/ queries only metrics the proxy exports,
// grouped only by labels those metrics have.
func TestGrafanaDashboardMatchesMetrics(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	// Every metric with a sample, so that vectors show up in Gather.
	m := newMetrics(func() int { return 0 }, func() bool { return true })
	m.sessionStarted("toml")
	m.sessionEnded(1, 1)
	m.loginOK("toml")
	m.authFailed(connMeta{})
	m.observeDial(time.Millisecond, nil)
	m.handshake.Observe(0.1)
	m.bans.Inc()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{}
	for _, f := range fams {
		ls := map[string]bool{"job": true, "instance": true, "le": f.GetType().String() == "HISTOGRAM"}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		name := f.GetName()
		labels[name] = ls
		if f.GetType().String() == "HISTOGRAM" {
			labels[name+"_bucket"], labels[name+"_count"], labels[name+"_sum"] = ls, ls, ls
		}
	}
	metricRe := regexp.MustCompile(`\b((?:xpra_edge|process|go)_[a-z_]+)\b`)
	byRe := regexp.MustCompile(`by \(([^)]*)\)`)
	n := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricRe.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q queries no metric", p.Title, tg.Expr)
			}
			for _, name := range names {
				ls, ok := labels[name]
				if !ok {
					t.Errorf("panel %q queries %s, which the proxy does not export", p.Title, name)
					continue
				}
				n++
				for _, g := range byRe.FindAllStringSubmatch(tg.Expr, -1) {
					for _, l := range strings.Split(g[1], ",") {
						if l = strings.TrimSpace(l); !ls[l] {
							t.Errorf("panel %q groups %s by %q, which it does not have", p.Title, name, l)
						}
					}
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d metric references checked", n)
	}
}
