package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xpra-edge/xpra-edge/edge"
	"github.com/xpra-edge/xpra-edge/internal/pgtest"
)

// BenchmarkLoginSessionRecord is what a fleet node adds to each session
// setup: the admission (with max_sessions_per_user, counted under the
// user's lock) and the end, against a private cluster on loopback. The
// relay itself never touches the database.
func BenchmarkLoginSessionRecord(b *testing.B) {
	c := pgtest.Start(b)
	s, err := Open(context.Background(), Options{DSN: c.DSN(), Node: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m, err := NewMember(context.Background(), s, MemberOptions{Heartbeat: time.Hour, DeadAfter: 2 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	lim := edge.Limits{MaxSessionsPerUser: 1000}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		adm, err := m.Admit(ctx, edge.SessionRecord{ID: i, UUID: fmt.Sprintf("%032x", i), User: "u", Remote: "192.0.2.1:1", Target: "tcp://t"}, lim)
		if err != nil {
			b.Fatal(err)
		}
		// End synchronously, as the benchmark's unit of work.
		if err := m.recordEnds(ctx, []pendingEnd{{uuid: fmt.Sprintf("%032x", i), reason: "done"}}); err != nil {
			b.Fatal(err)
		}
		_ = adm
	}
}
