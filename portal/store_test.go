package portal

import (
	"fmt"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/auth"
)

// fullStore is a store holding maxFlows pending redirect logins.
func fullStore(tb testing.TB) *store {
	now := time.Unix(1_800_000_000, 0)
	s := newStore(func() time.Time { return now })
	for i := range maxFlows {
		if s.addFlow("idp", nil, fmt.Sprint("10.0.", i)) == "" {
			tb.Fatalf("flow %d refused", i)
		}
	}
	return s
}

// A flood of new redirect logins at the global bound (one GET each,
// before any login) costs each request O(1) under the store's lock, the
// lock every portal request and every ticket takes: 5000 of them within
// 2 s (0.23 s under -race on the loaded 2-core CI machine), where a scan
// of the held flows per request took 0.9 ms each (9.5 ms under -race:
// 48 s for the 5000).
func TestFlowEvictionIsCheap(t *testing.T) {
	s := fullStore(t)
	began := time.Now()
	for i := range 5000 {
		s.addFlow("idp", nil, fmt.Sprint("11.", i))
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("5000 flows at the bound took %v", d)
	}
	s.mu.Lock()
	n, order := len(s.flows), s.flowOrder.Len()
	s.mu.Unlock()
	if n != maxFlows || order != maxFlows {
		t.Errorf("%d flows, %d in order; want %d", n, order, maxFlows)
	}
}

func BenchmarkAddFlowFull(b *testing.B) {
	s := fullStore(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.addFlow("idp", nil, fmt.Sprint("11.", i))
	}
}

// One user's logins are bounded on their own (their oldest goes first),
// so that one account (or any name, with a module that takes any
// password) logging in again and again cannot push everybody else's
// logins out of the global bound.
func TestLoginsBoundedPerUser(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newStore(func() time.Time { return now })
	res := func(name string) Result { return Result{Identity: auth.Identity{Username: name}} }
	bob, _ := s.add(res("bob"), true, "password")
	first, _ := s.add(res("alice"), false, "password")
	second, _ := s.add(res("alice"), false, "password")
	for range MaxLogins {
		s.add(res("alice"), false, "password")
	}
	if s.get(bob, time.Hour, time.Hour) == nil {
		t.Errorf("alice's %d logins evicted bob's", MaxLogins+2)
	}
	if s.get(first, time.Hour, time.Hour) != nil || s.get(second, time.Hour, time.Hour) != nil {
		t.Errorf("alice's oldest logins are still live")
	}
	s.mu.Lock()
	n := len(s.logins)
	s.mu.Unlock()
	if n != 1+maxLoginsPerUser {
		t.Errorf("%d logins held, want bob's and alice's %d", n, maxLoginsPerUser)
	}
	// The global bound still holds, oldest first, across users.
	for i := range MaxLogins {
		s.add(res(fmt.Sprint("u", i)), false, "password")
	}
	s.mu.Lock()
	n = len(s.logins)
	inLists := 0
	for _, ul := range s.byUser {
		inLists += ul.Len()
	}
	s.mu.Unlock()
	if inLists != n {
		t.Errorf("the users' lists hold %d logins, the store %d", inLists, n)
	}
	if n != MaxLogins || s.get(bob, time.Hour, time.Hour) != nil {
		t.Errorf("%d logins held (bound %d); bob's, the oldest, live: %v", n, MaxLogins, s.get(bob, time.Hour, time.Hour) != nil)
	}
}
