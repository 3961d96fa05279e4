package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// metric is one row of the table: how to read it from a result, and
// whether bigger is better (for the ratios' sake it does not matter).
type metric struct {
	name string
	get  func(*Result) (float64, bool)
}

func metrics(rep *Report) []metric {
	haveDirect := rep.result("direct") != nil && rep.result("direct").Latency.Pings > 0
	return []metric{
		{"throughput 1 session MB/s", func(r *Result) (float64, bool) { return r.Throughput1.MBps, r.Throughput1.Bytes > 0 }},
		{"throughput 1 session packets/s", func(r *Result) (float64, bool) { return r.Throughput1.PacketsPerSec, r.Throughput1.Packets > 0 }},
		{fmt.Sprintf("throughput %d sessions MB/s", rep.Sessions), func(r *Result) (float64, bool) { return r.ThroughputN.MBps, r.ThroughputN.Bytes > 0 }},
		{fmt.Sprintf("throughput %d sessions packets/s", rep.Sessions), func(r *Result) (float64, bool) {
			return r.ThroughputN.PacketsPerSec, r.ThroughputN.Packets > 0
		}},
		{fmt.Sprintf("small packets %d sessions packets/s", rep.Sessions), func(r *Result) (float64, bool) {
			return r.ThroughputSmall.PacketsPerSec, r.ThroughputSmall.Packets > 0
		}},
		{"ping round trip p50 us", func(r *Result) (float64, bool) { return r.Latency.P50us, r.Latency.Pings > 0 }},
		{"ping round trip p99 us", func(r *Result) (float64, bool) { return r.Latency.P99us, r.Latency.Pings > 0 }},
		{"added latency p50 us", func(r *Result) (float64, bool) {
			return r.Latency.AddedP50us, r.Latency.Pings > 0 && r.Name != "direct" && haveDirect
		}},
		{"added latency p99 us", func(r *Result) (float64, bool) {
			return r.Latency.AddedP99us, r.Latency.Pings > 0 && r.Name != "direct" && haveDirect
		}},
		{"session setups/s", func(r *Result) (float64, bool) { return r.Setup.PerSec, r.Setup.OK > 0 }},
		{"session setup p50 ms", func(r *Result) (float64, bool) { return r.Setup.P50ms, r.Setup.OK > 0 }},
		{"session setup p99 ms", func(r *Result) (float64, bool) { return r.Setup.P99ms, r.Setup.OK > 0 }},
		{"idle sessions held", func(r *Result) (float64, bool) { return float64(r.Idle.Sessions), r.Idle.Sessions > 0 }},
		{"RSS KiB per idle session", func(r *Result) (float64, bool) { return r.Idle.RSSPerSession / 1024, r.Idle.Sessions > 0 }},
		{"PSS KiB per idle session", func(r *Result) (float64, bool) {
			return r.Idle.PSSPerSession / 1024, r.Idle.Sessions > 0 && r.Idle.PSSAfter > 0
		}},
		{"Go heap KiB per idle session", func(r *Result) (float64, bool) { return r.Idle.HeapPerSession / 1024, r.Idle.HeapAfter > 0 }},
		{fmt.Sprintf("cores busy, %d-session run", rep.Sessions), func(r *Result) (float64, bool) {
			return r.ThroughputN.MachineBusy * float64(rep.CPUs), r.ThroughputN.Seconds > 0
		}},
		{fmt.Sprintf("proxy cores used, %d-session run", rep.Sessions), func(r *Result) (float64, bool) {
			return r.ThroughputN.ProxyCPU / r.ThroughputN.Seconds, r.ThroughputN.Seconds > 0 && r.Name != "direct"
		}},
		{"proxy CPU s per GB", func(r *Result) (float64, bool) { return r.CPUPerGB, r.CPUPerGB > 0 }},
	}
}

func fmtNum(v float64) string {
	switch a := max(v, -v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratioCol is one ratio column of the table: a's value over b's.
type ratioCol struct{ label, a, b string }

// ratioCols are the ratios worth printing for the scenarios that ran:
// each edge transport over direct, edge-tcp over xpra proxy, edge-tcp6
// over xpra6 proxy and over edge-tcp, edge-bridge over edge-tcp6,
// edge-tcp-fleet over edge-tcp, and each edge transport over the
// same transport of the -base binary.
func (rep *Report) ratioCols() []ratioCol {
	var out []ratioCol
	has := func(n string) bool { return rep.result(n) != nil }
	transports := []string{"tcp", "tls", "ws", "wss"}
	for _, x := range transports {
		if has("edge-"+x) && has("direct") {
			out = append(out, ratioCol{x + "/direct", "edge-" + x, "direct"})
		}
	}
	if has("edge-tcp") && has("xpra-proxy") {
		out = append(out, ratioCol{"tcp/xpra", "edge-tcp", "xpra-proxy"})
	}
	// the 6.x-style client: through xpra-edge against the same client
	// through xpra 6's proxy, and against the 3.1.3-style client through
	// xpra-edge (what rencodeplus costs the relay)
	if has("edge-tcp6") && has("xpra6-proxy") {
		out = append(out, ratioCol{"tcp6/xpra6", "edge-tcp6", "xpra6-proxy"})
	}
	if has("edge-tcp6") && has("edge-tcp") {
		out = append(out, ratioCol{"tcp6/tcp", "edge-tcp6", "edge-tcp"})
	}
	// the bridge: the same 6.x-style client, its packets decoded and
	// encoded again toward a 3.1.3-style server, against relayed unchanged
	if has("edge-bridge") && has("edge-tcp6") {
		out = append(out, ratioCol{"bridge/tcp6", "edge-bridge", "edge-tcp6"})
	}
	// fleet mode: the same tcp relay with the proxy a PostgreSQL fleet
	// node (postgres auth, session registry) against a standalone one
	if has("edge-tcp-fleet") && has("edge-tcp") {
		out = append(out, ratioCol{"fleet/tcp", "edge-tcp-fleet", "edge-tcp"})
	}
	for _, x := range transports {
		if has("edge-"+x) && has("base-"+x) {
			out = append(out, ratioCol{x + " new/base", "edge-" + x, "base-" + x})
		}
	}
	return out
}

// WriteTable prints the results with the ratios of ratioCols, then the
// targets.
func (rep *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 4, 0, 2, ' ', tabwriter.AlignRight)
	var cols []string
	for _, r := range rep.Results {
		cols = append(cols, r.Name)
	}
	rcols := rep.ratioCols()
	fmt.Fprintf(tw, "metric\t%s", strings.Join(cols, "\t"))
	for _, rc := range rcols {
		fmt.Fprintf(tw, "\t%s", rc.label)
	}
	fmt.Fprintf(tw, "\t\n")
	ratio := func(m metric, a, b string) string {
		ra, rb := rep.result(a), rep.result(b)
		if ra == nil || rb == nil {
			return "-"
		}
		va, oka := m.get(ra)
		vb, okb := m.get(rb)
		if !oka || !okb || vb == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", va/vb)
	}
	for _, m := range metrics(rep) {
		fmt.Fprintf(tw, "%s", m.name)
		for _, c := range cols {
			if r := rep.result(c); r == nil {
				fmt.Fprintf(tw, "\t-")
			} else if v, ok := m.get(r); ok {
				fmt.Fprintf(tw, "\t%s", fmtNum(v))
			} else {
				fmt.Fprintf(tw, "\t-")
			}
		}
		for _, rc := range rcols {
			fmt.Fprintf(tw, "\t%s", ratio(m, rc.a, rc.b))
		}
		fmt.Fprintf(tw, "\t\n")
	}
	_ = tw.Flush()
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(w, "%s: skipped: %s\n", r.Name, firstLine(r.Skipped))
		}
		for _, e := range []string{r.Latency.Error, r.Throughput1.FirstError, r.ThroughputN.FirstError, r.ThroughputSmall.FirstError, r.Setup.FirstError, r.Idle.FirstError} {
			if e != "" {
				fmt.Fprintf(w, "%s: error: %s\n", r.Name, firstLine(e))
			}
		}
		for _, x := range []Throughput{r.Throughput1, r.ThroughputN, r.ThroughputSmall} {
			if x.LoginFailed > 0 {
				fmt.Fprintf(w, "%s: %d of %d sessions could not log in for a throughput run: %s\n", r.Name, x.LoginFailed, x.Sessions, firstLine(x.LoginError))
			}
		}
		if r.Idle.Wanted > 0 && r.Idle.Sessions < r.Idle.Wanted {
			fmt.Fprintf(w, "%s: only %d of %d idle sessions opened\n", r.Name, r.Idle.Sessions, r.Idle.Wanted)
		}
	}
	if rep.LoadBefore > float64(rep.CPUs) {
		fmt.Fprintf(w, "warning: load average %.1f at the start (%.1f at the end) on %d CPUs: other work was running, numbers are noisy\n",
			rep.LoadBefore, rep.LoadAfter, rep.CPUs)
	}
	if rep.ServerErrors > 0 {
		fmt.Fprintf(w, "synthetic server: %d errors, last: %s\n", rep.ServerErrors, rep.ServerLastErr)
	}
	if c := rep.Corrupt(); c > 0 {
		fmt.Fprintf(w, "CORRUPT DATA in %d sessions\n", c)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "targets (xpra-edge, 2 cores):")
	tw = tabwriter.NewWriter(w, 4, 0, 2, ' ', 0)
	for _, c := range rep.Checks {
		v, met := "not measured", "?"
		if c.Value != nil {
			v = fmtNum(*c.Value)
		}
		if c.Met != nil {
			met = map[bool]string{true: "met", false: "MISSED"}[*c.Met]
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Name, c.Goal, v, met)
	}
	_ = tw.Flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// checks evaluates the targets of issue #7.
func checks(rep *Report) []Check {
	var out []Check
	add := func(name, goal string, v float64, ok bool, met func(float64) bool) {
		c := Check{Name: name, Goal: goal}
		if ok {
			c.Value = &v
			m := met(v)
			c.Met = &m
		}
		out = append(out, c)
	}
	thr := func(name string, n bool) (float64, bool) {
		r := rep.result(name)
		if r == nil {
			return 0, false
		}
		t := r.Throughput1
		if n {
			t = r.ThroughputN
		}
		return t.MBps, t.Bytes > 0 && t.Errors == 0
	}
	ratio := func(a, b string, n bool) (float64, bool) {
		va, oka := thr(a, n)
		vb, okb := thr(b, n)
		if !oka || !okb || vb == 0 {
			return 0, false
		}
		return va / vb, true
	}
	ge := func(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
	le := func(x float64) func(float64) bool { return func(v float64) bool { return v <= x } }
	for _, n := range []bool{false, true} {
		label := "1 session"
		if n {
			label = fmt.Sprintf("%d sessions", rep.Sessions)
		}
		v, ok := ratio("edge-tcp", "direct", n)
		add("throughput tcp/direct, "+label, ">= 0.85x", v, ok, ge(0.85))
		v, ok = ratio("edge-tls", "direct", n)
		add("throughput tls/direct, "+label, ">= 0.6x", v, ok, ge(0.6))
		v, ok = ratio("edge-tcp", "xpra-proxy", n)
		add("throughput tcp/xpra proxy, "+label, ">= 20x", v, ok, ge(20))
	}
	if a, b := rep.result("edge-tcp"), rep.result("xpra-proxy"); a != nil && b != nil {
		ok := a.ThroughputSmall.Errors == 0 && b.ThroughputSmall.Errors == 0 && b.ThroughputSmall.PacketsPerSec > 0
		v := 0.0
		if ok {
			v = a.ThroughputSmall.PacketsPerSec / b.ThroughputSmall.PacketsPerSec
		}
		add(fmt.Sprintf("small packets/s tcp/xpra proxy, %d sessions", rep.Sessions), ">= 20x", v, ok, ge(20))
	} else {
		out = append(out, Check{Name: "small packets/s tcp/xpra proxy", Goal: ">= 20x"})
	}
	if r := rep.result("edge-tcp"); r != nil {
		add("added latency p50 (tcp)", "<= 50 us", r.Latency.AddedP50us, r.Latency.Pings > 0 && rep.result("direct") != nil, le(50))
		add("added latency p99 (tcp)", "<= 500 us", r.Latency.AddedP99us, r.Latency.Pings > 0 && rep.result("direct") != nil, le(500))
		add("session setups/s (tcp)", ">= 1000", r.Setup.PerSec, r.Setup.OK > 0, ge(1000))
		add("RSS per idle session (tcp)", "<= 64 KiB", r.Idle.RSSPerSession/1024, r.Idle.Sessions > 0, le(64))
	} else {
		for _, c := range [][2]string{{"added latency p50 (tcp)", "<= 50 us"}, {"added latency p99 (tcp)", "<= 500 us"},
			{"session setups/s (tcp)", ">= 1000"}, {"RSS per idle session (tcp)", "<= 64 KiB"}} {
			out = append(out, Check{Name: c[0], Goal: c[1]})
		}
	}
	if r := rep.result("edge-tls"); r != nil {
		add("session setups/s (tls)", ">= 500", r.Setup.PerSec, r.Setup.OK > 0, ge(500))
	} else {
		out = append(out, Check{Name: "session setups/s (tls)", Goal: ">= 500"})
	}
	return out
}
