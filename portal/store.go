package portal

import (
	"container/list"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/xpra-edge/xpra-edge/router"
)

// login is one browser's portal login, found by its cookie's hash.
type login struct {
	key     [32]byte
	user    string
	res     Result
	admin   bool
	csrf    string // per-login CSRF token, in every form
	created time.Time
	used    time.Time
	method  string
	tickets []*ticket
	elem    *list.Element // in store.order
	uelem   *list.Element // in store.byUser[user]
}

// ticket is a pending "open": single use, short-lived, bound to its login
// (the browser's cookie), the user and one session.
type ticket struct {
	secret  []byte
	user    string
	target  router.Target
	expires time.Time
}

// flow is a pending redirect login.
type flow struct {
	key     [32]byte
	method  string
	data    Flow
	expires time.Time
	addr    string // the client that began it (edge.ClientKey)
	elem    *list.Element
}

// store holds logins, their tickets and pending redirect flows, bounded.
type store struct {
	mu     sync.Mutex
	now    func() time.Time
	logins map[[32]byte]*login
	order  *list.List // oldest first
	// byUser holds each user's logins, oldest first.
	byUser map[string]*list.List
	flows  map[[32]byte]*flow
	// flowOrder holds the flows oldest first: all last FlowTTL, so the
	// front is the first to expire and the one to evict.
	flowOrder *list.List
	// flowsBy counts the pending flows of each client (edge.ClientKey).
	flowsBy map[string]int
}

// Bounds of pending redirect logins: in all (when full, the oldest goes)
// and per client (edge.ClientKey: an IPv6 /64 is one; beyond it, that
// client's new ones are refused), so that one client cannot crowd out
// everybody's logins in progress.
const (
	maxFlows        = 10000
	maxFlowsPerAddr = 16
)

func newStore(now func() time.Time) *store {
	return &store{now: now, logins: map[[32]byte]*login{}, order: list.New(), byUser: map[string]*list.List{}, flows: map[[32]byte]*flow{}, flowOrder: list.New(), flowsBy: map[string]int{}}
}

// add starts a login and returns its cookie value. When the user holds
// maxLoginsPerUser logins their oldest goes, and when the store holds
// MaxLogins the oldest of all goes.
func (s *store) add(res Result, admin bool, method string) (cookie string, l *login) {
	cookie = randomToken()
	now := s.now()
	l = &login{key: tokenKey(cookie), user: res.Identity.Username, res: res, admin: admin,
		csrf: randomToken(), created: now, used: now, method: method}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ul := s.byUser[l.user]; ul != nil {
		for ul.Len() >= maxLoginsPerUser {
			s.removeLocked(ul.Front().Value.(*login))
		}
	}
	for len(s.logins) >= MaxLogins {
		s.removeLocked(s.order.Front().Value.(*login))
	}
	// Looked up again: the removals drop a user's list when it empties.
	ul := s.byUser[l.user]
	if ul == nil {
		ul = list.New()
		s.byUser[l.user] = ul
	}
	l.elem = s.order.PushBack(l)
	l.uelem = ul.PushBack(l)
	s.logins[l.key] = l
	return cookie, l
}

// get returns the live login of a cookie value and marks it used; nil
// when there is none or it expired (it is then removed).
func (s *store) get(cookie string, loginTTL, idleTTL time.Duration) *login {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.liveLocked(cookie, now, loginTTL, idleTTL)
	if l != nil {
		l.used = now
	}
	return l
}

// liveLocked is the live login of a cookie value, or nil; a login past
// its bounds is removed, its tickets with it.
func (s *store) liveLocked(cookie string, now time.Time, loginTTL, idleTTL time.Duration) *login {
	if cookie == "" {
		return nil
	}
	l := s.logins[tokenKey(cookie)]
	if l == nil {
		return nil
	}
	if !l.live(now, loginTTL, idleTTL) {
		s.removeLocked(l)
		return nil
	}
	return l
}

// live reports whether l is within its bounds at now.
func (l *login) live(now time.Time, loginTTL, idleTTL time.Duration) bool {
	return now.Sub(l.created) <= loginTTL && now.Sub(l.used) <= idleTTL
}

// remove ends a login (logout) and its pending tickets.
func (s *store) remove(l *login) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logins[l.key] == l {
		s.removeLocked(l)
	}
}

func (s *store) removeLocked(l *login) {
	delete(s.logins, l.key)
	s.order.Remove(l.elem)
	if ul := s.byUser[l.user]; ul != nil {
		ul.Remove(l.uelem)
		if ul.Len() == 0 {
			delete(s.byUser, l.user)
		}
	}
	for _, t := range l.tickets {
		clear(t.secret)
	}
	l.tickets = nil
}

// mint adds a ticket for t to l and returns its secret.
func (s *store) mint(l *login, t router.Target, ttl time.Duration) string {
	secret := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(l)
	if len(l.tickets) >= maxTicketsPerLogin {
		clear(l.tickets[0].secret)
		l.tickets = l.tickets[1:]
	}
	l.tickets = append(l.tickets, &ticket{secret: []byte(secret), user: l.user, target: t, expires: s.now().Add(ttl)})
	return secret
}

func (s *store) pruneLocked(l *login) {
	now := s.now()
	kept := l.tickets[:0]
	for _, t := range l.tickets {
		if now.Before(t.expires) {
			kept = append(kept, t)
		} else {
			clear(t.secret)
		}
	}
	l.tickets = kept
}

// live reports whether cookie names a live login.
func (s *store) live(cookie string, loginTTL, idleTTL time.Duration) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveLocked(cookie, now, loginTTL, idleTTL) != nil
}

// consume finds the live ticket of the cookie's live login for username
// whose secret match accepts, removes it (single use) and returns it.
// pending says whether the login held any live ticket at all.
func (s *store) consume(cookie, username string, match func(secret []byte) bool, loginTTL, idleTTL time.Duration) (tk *ticket, pending, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.liveLocked(cookie, now, loginTTL, idleTTL)
	if l == nil {
		return nil, false, false
	}
	s.pruneLocked(l)
	pending = len(l.tickets) > 0
	for i, t := range l.tickets {
		userOK := subtle.ConstantTimeCompare([]byte(t.user), []byte(username)) == 1
		if match(t.secret) && userOK {
			l.tickets = append(l.tickets[:i:i], l.tickets[i+1:]...)
			return t, true, true
		}
	}
	return nil, pending, false
}

// addFlow keeps a redirect login's flow begun by client addr and
// returns its cookie value ("" when addr has too many pending). It costs
// O(1) (amortized) whatever is held: expired flows go from the old end,
// and when full the oldest goes, never a scan of every flow under the
// lock that every portal request needs.
func (s *store) addFlow(method string, data Flow, addr string) string {
	c := randomToken()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.flowOrder.Front(); e != nil; e = s.flowOrder.Front() {
		if f := e.Value.(*flow); !now.Before(f.expires) {
			s.dropFlowLocked(f)
			continue
		}
		break
	}
	if s.flowsBy[addr] >= maxFlowsPerAddr {
		return ""
	}
	if len(s.flows) >= maxFlows {
		s.dropFlowLocked(s.flowOrder.Front().Value.(*flow))
	}
	f := &flow{key: tokenKey(c), method: method, data: data, expires: now.Add(FlowTTL), addr: addr}
	f.elem = s.flowOrder.PushBack(f)
	s.flows[f.key] = f
	s.flowsBy[addr]++
	return c
}

func (s *store) dropFlowLocked(f *flow) {
	delete(s.flows, f.key)
	s.flowOrder.Remove(f.elem)
	if s.flowsBy[f.addr]--; s.flowsBy[f.addr] <= 0 {
		delete(s.flowsBy, f.addr)
	}
}

// takeFlow removes and returns a live flow of method.
func (s *store) takeFlow(cookie, method string) (Flow, bool) {
	if cookie == "" {
		return nil, false
	}
	k := tokenKey(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[k]
	if f == nil {
		return nil, false
	}
	s.dropFlowLocked(f)
	if f.method != method || !s.now().Before(f.expires) {
		return nil, false
	}
	return f.data, true
}
