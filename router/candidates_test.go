package router

import (
	"reflect"
	"testing"
)

func displays(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Display)
	}
	return out
}

func TestCandidates(t *testing.T) {
	r := &Router{
		Sessions: fakeLister{1000: {{Display: ":10", Socket: "/s/10"}, {Display: ":2", Socket: "/s/2"}, {Display: ":proxy-3", Socket: "/s/p3"}, {Display: ":100", Socket: "/s/100"}}},
		Exclude:  []string{":100"},
		Routes: &Table{Routes: []Route{
			{Name: "desk", Host: "desk.example.com", Targets: []string{"tcp://h1:1/5", "tcp://h2:2/6"}},
			{Name: "own", Host: "own.example.com"},
		}},
	}
	for _, tc := range []struct {
		name string
		req  Request
		want []string
	}{
		{"local, sorted, own display and proxies left out", Request{User: "u", Local: true, UID: 1000}, []string{":2", ":10"}},
		{"declared; a :N entry without a live session left out", Request{User: "u", UID: 1000, Declared: []string{"tcp://h:1/7", ":10", ":55", "bad://x"}}, []string{"tcp://h:1/7", ":10"}},
		{"a route's targets", Request{SNI: "desk.example.com", User: "u", Local: true, UID: 1000}, []string{"tcp://h1:1/5", "tcp://h2:2/6"}},
		{"a route without targets: the user's own", Request{SNI: "own.example.com", User: "u", Local: true, UID: 1000}, []string{":2", ":10"}},
		{"nothing", Request{User: "u"}, nil},
		{"a display asked for is ignored", Request{User: "u", Local: true, UID: 1000, Display: ":10"}, []string{":2", ":10"}},
	} {
		ts, err := r.Candidates(tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := displays(ts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	ts, _ := r.Candidates(Request{SNI: "desk.example.com", User: "u"})
	if len(ts) != 2 || ts[0].Route != "desk" || ts[0].Address != "h1:1" {
		t.Errorf("route targets: %+v", ts)
	}
	ts, _ = r.Candidates(Request{User: "u", Local: true, UID: 1000})
	if ts[0].Scheme != "unix" || ts[0].Address != "/s/2" {
		t.Errorf("local target: %+v", ts[0])
	}
}
