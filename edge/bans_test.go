package edge

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Issue 11, item 17: IPv6 clients are banned by /64 (one host owns a whole
// /64: banning one address of it bans nobody), IPv4-mapped addresses as
// their IPv4. Before, each IPv6 address was its own key.
func TestBansIPv6By64(t *testing.T) {
	b := newBanList()
	b.setPolicy(BanPolicy{MaxFailures: 3, Window: time.Minute, BanTime: time.Minute})
	for _, a := range []string{"2001:db8:1:2::1", "[2001:db8:1:2::2]", "2001:db8:1:2:ffff:ffff:ffff:ffff%eth0"} {
		b.failure(a)
	}
	for addr, want := range map[string]bool{
		"2001:db8:1:2::1": true, "2001:db8:1:2:abcd::9": true, "2001:db8:1:3::1": false, "2001:db8::1": false,
	} {
		if got := b.banned(addr); got != want {
			t.Errorf("banned(%s) = %v, want %v", addr, got, want)
		}
	}
	b.failure("::ffff:192.0.2.1")
	b.failure("192.0.2.1")
	b.failure("::ffff:192.0.2.1")
	if !b.banned("192.0.2.1") || b.banned("192.0.2.2") {
		t.Error("IPv4-mapped failures are not counted as their IPv4")
	}
	if k := addrKey("[2001:db8:1:2::7]:443"); k != "2001:db8:1:2::/64" {
		t.Errorf("unauthenticated connections are counted by %q, want the /64", k)
	}
}

// The ban table has a hard cap and stays cheap when full: a flood of new
// addresses evicts the oldest unbanned ones in O(1) each, never a ban
// while unbanned entries remain. Before, the table grew without bound past
// 100,000 entries and scanned all of them for every new address.
func TestBanTableHardCap(t *testing.T) {
	b := newBanList()
	b.setPolicy(BanPolicy{MaxFailures: 2, Window: time.Hour, BanTime: time.Hour})
	b.failure("198.51.100.7")
	b.failure("198.51.100.7")
	if !b.banned("198.51.100.7") {
		t.Fatal("not banned")
	}
	start := time.Now()
	const flood = maxTracked + maxTracked/2
	for i := range uint32(flood) {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.failure(a.String())
		if i%10000 == 0 && time.Since(start) > 30*time.Second {
			t.Fatalf("%d failures from new addresses took %v", i, time.Since(start))
		}
	}
	took := time.Since(start)
	b.mu.Lock()
	n, pending, banned := len(b.entries), b.pending.Len(), b.bannedL.Len()
	b.mu.Unlock()
	t.Logf("%d failures from new addresses in %v; %d entries (%d pending, %d banned)", flood, took.Round(time.Millisecond), n, pending, banned)
	if n > maxTracked || pending+banned != n {
		t.Errorf("%d entries (%d+%d), cap %d", n, pending, banned, maxTracked)
	}
	if !b.banned("198.51.100.7") {
		t.Error("the flood evicted a ban while unbanned entries remained")
	}
	// One /64 of IPv6 addresses is one entry.
	for i := range 1000 {
		b.failure(fmt.Sprintf("2001:db8:5:6::%x", i+1))
	}
	b.mu.Lock()
	_, ok := b.entries["2001:db8:5:6::/64"]
	n2 := len(b.entries)
	b.mu.Unlock()
	if !ok || n2 > maxTracked {
		t.Errorf("IPv6 flood: /64 entry %v, %d entries", ok, n2)
	}
	// Expired entries go as time passes, without a scan.
	now := time.Now().Add(2 * time.Hour)
	b.now = func() time.Time { return now }
	if c := b.count(); c != 0 {
		t.Errorf("%d bans counted after they ended", c)
	}
	b.failure("203.0.113.1")
	b.mu.Lock()
	n3 := len(b.entries)
	b.mu.Unlock()
	if n3 != 1 {
		t.Errorf("%d entries after everything expired and one new failure", n3)
	}
}
