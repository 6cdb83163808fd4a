package httpapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// limiter slows down the guessing of tokens: each client address may
// present burst wrong tokens, then one a second (a token bucket that
// refills one try a second). An address out of tries is answered 429
// without its token being checked, so that a right guess then teaches
// nothing either.
type limiter struct {
	burst float64

	// mu guards addrs.
	mu    sync.Mutex
	addrs map[string]*bucket
}

// bucket is one address's tries: tries at the time at.
type bucket struct {
	tries float64
	at    time.Time
}

// maxLimited bounds the addresses a limiter follows; past it, those that
// have all their tries back are forgotten, then any.
const maxLimited = 100000

func newLimiter(burst int) *limiter {
	return &limiter{burst: float64(burst), addrs: make(map[string]*bucket)}
}

// level returns b's tries at now.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	return min(l.burst, b.tries+now.Sub(b.at).Seconds())
}

// allow reports whether addr may present a token at now, and if not, how
// long until it may.
func (l *limiter) allow(addr string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.addrs[addr]
	if b == nil {
		return 0, true
	}
	if t := l.level(b, now); t < 1 {
		return time.Duration((1 - t) * float64(time.Second)), false
	}
	return 0, true
}

// fail takes one try from addr, and reports whether it has none left.
func (l *limiter) fail(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.addrs[addr]
	if b == nil {
		if len(l.addrs) >= maxLimited {
			l.pruneLocked(now)
		}
		b = &bucket{tries: l.burst, at: now}
		l.addrs[addr] = b
	}
	b.tries, b.at = l.level(b, now)-1, now
	return b.tries < 1
}

// pruneLocked forgets the addresses that have all their tries back, and
// if that is not enough, some others.
func (l *limiter) pruneLocked(now time.Time) {
	for a, b := range l.addrs {
		if l.level(b, now) >= l.burst {
			delete(l.addrs, a)
		}
	}
	for a := range l.addrs {
		if len(l.addrs) < maxLimited {
			break
		}
		delete(l.addrs, a)
	}
}

// clientAddr returns the address r came from, as the limiter counts it:
// an IPv4 address, or the /64 of an IPv6 address (one machine usually has
// a whole /64).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
