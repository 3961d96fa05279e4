package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 11, item 4: a login waits for a hash-check slot at most SlotWait
// (then ErrBusy: an authentication error, not a failed login), or until
// its context ends. Before, it queued on the semaphore for as long as the
// slots stayed taken.
func TestHashSlotWaitIsBounded(t *testing.T) {
	old := SlotWait
	SlotWait = 200 * time.Millisecond
	t.Cleanup(func() { SlotWait = old })
	h := HashPassword([]byte("pw"))
	pr := &proof{kind: modeXOR, plain: []byte("pw")}
	if ok, err := pr.checkStoredCtx(context.Background(), credential{hash: h}); !ok || err != nil {
		t.Fatalf("free slots: %v %v", ok, err)
	}
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	defer func() {
		for range cap(hashSlots) {
			<-hashSlots
		}
	}()
	start := time.Now()
	ok, err := pr.checkStoredCtx(context.Background(), credential{hash: h})
	if ok || !errors.Is(err, ErrBusy) {
		t.Fatalf("all slots taken: %v %v, want ErrBusy", ok, err)
	}
	if d := time.Since(start); d < SlotWait || d > SlotWait+2*time.Second {
		t.Errorf("gave up after %v, SlotWait %v", d, SlotWait)
	}
	if errors.Is(err, ErrFailed) {
		t.Error("a busy check counts as a failed login")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := pr.checkStoredCtx(ctx, credential{hash: h}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ended context: %v", err)
	}
	// Plain passwords need no slot.
	if ok, err := (&proof{kind: modeXOR, plain: []byte("pw")}).checkStoredCtx(context.Background(), credential{plain: "pw"}); !ok || err != nil {
		t.Errorf("plain password with every hash slot taken: %v %v", ok, err)
	}
}

// At most cap(pamSlots) PAM checks run at once; the rest wait at most
// SlotWait and get ErrBusy. Before, every login ran PAM at once.
func TestPAMConcurrencyIsBounded(t *testing.T) {
	old, oldCheck := SlotWait, pamCheckFunc
	SlotWait = 300 * time.Millisecond
	release := make(chan struct{})
	var running, peak atomic.Int32
	pamCheckFunc = func(string, string, []byte, bool) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		running.Add(-1)
		return errors.New("denied")
	}
	t.Cleanup(func() { SlotWait, pamCheckFunc = old, oldCheck })
	p := &PAM{service: "login", checkAccount: true}
	const logins = 20
	var wg sync.WaitGroup
	var busy atomic.Int32
	for range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := p.verify(ctx, "someone", &proof{kind: modeXOR, plain: []byte("pw")})
			if errors.Is(err, ErrBusy) {
				busy.Add(1)
			}
		}()
	}
	time.Sleep(SlotWait + 200*time.Millisecond)
	close(release)
	wg.Wait()
	if got := peak.Load(); got > int32(cap(pamSlots)) || got == 0 {
		t.Errorf("%d PAM checks ran at once, limit %d", got, cap(pamSlots))
	}
	if got := busy.Load(); got != logins-int32(cap(pamSlots)) {
		t.Errorf("%d logins were told busy, want %d", got, logins-cap(pamSlots))
	}
}
