package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// faultApplies reports whether per-request faults apply to path: when
// fault_paths is set, only paths containing one of its substrings.
func faultApplies(cfg *Config, path string) bool {
	if len(cfg.FaultPaths) == 0 {
		return true
	}
	for _, p := range cfg.FaultPaths {
		if strings.Contains(path, p) {
			return true
		}
	}
	return false
}

func roll(rate float64) bool {
	return rate > 0 && (rate >= 1 || rand.Float64() < rate)
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// dropConn closes the client connection without writing a response.
func dropConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// Not hijackable (e.g. HTTP/2): net/http aborts the stream for us.
	panic(http.ErrAbortHandler)
}

// preFaults runs the faults that happen before the request is handled:
// latency, drop, 429, error, and the capacity model. It returns a release
// func (non-nil when a capacity slot is held) and done=true when it already
// finished the request, with the outcome for the stats.
func (s *Server) preFaults(w http.ResponseWriter, r *http.Request, cfg *Config) (release func(), done bool, outcome int) {
	ctx := r.Context()
	if cfg.LatencyMs > 0 || cfg.LatencyJitterMs > 0 {
		d := time.Duration(cfg.LatencyMs) * time.Millisecond
		if cfg.LatencyJitterMs > 0 {
			d += time.Duration(rand.Int64N(cfg.LatencyJitterMs*int64(time.Millisecond) + 1))
		}
		if !sleepCtx(ctx, d) {
			return nil, true, outGone
		}
	}
	if roll(cfg.DropRate) {
		s.stats.add(func(s *stats) { s.faults.Drop++ })
		dropConn(w)
		return nil, true, outDrop
	}
	if roll(cfg.Rate429) {
		s.stats.add(func(s *stats) { s.faults.R429++ })
		ra := strconv.Itoa(cfg.RetryAfterS)
		if cfg.RetryAfterDate {
			ra = s.now().Add(time.Duration(cfg.RetryAfterS) * time.Second).UTC().Format(http.TimeFormat)
		}
		writeResp(w, response{status: 429, body: detailBody("Too Many Requests"), retryAfter: ra})
		return nil, true, 429
	}
	if roll(cfg.ErrorRate) {
		s.stats.add(func(s *stats) { s.faults.Error++ })
		writeResp(w, response{status: cfg.ErrorStatus, body: detailBody(http.StatusText(cfg.ErrorStatus))})
		return nil, true, cfg.ErrorStatus
	}
	if cfg.Capacity > 0 || cfg.ServiceTimeMs > 0 || cfg.ServiceTimePerQueuedMs > 0 {
		held := false
		queued := 0
		if cfg.Capacity > 0 {
			var res admitResult
			res, queued = s.limiter.acquire(ctx, s.cfgSnapshot)
			switch res {
			case admitGone:
				return nil, true, outGone
			case admitOverflow:
				s.stats.add(func(s *stats) { s.faults.Overflow++ })
				if cfg.Overflow == "stall" {
					if sleepCtx(ctx, time.Duration(cfg.StallMs)*time.Millisecond) {
						dropConn(w)
						return nil, true, outDrop
					}
					return nil, true, outGone
				}
				writeResp(w, response{status: 503, body: detailBody("Service Unavailable")})
				return nil, true, 503
			}
			held = true
		}
		svc := cfg.ServiceTimeMs + cfg.ServiceTimePerQueuedMs*float64(queued)
		if held {
			release = func() { s.limiter.release(s.cfgSnapshot()) }
		}
		if !sleepCtx(ctx, msDur(svc)) {
			if release != nil {
				release()
			}
			return nil, true, outGone
		}
	}
	if cfg.WriteLockMs > 0 && isWrite(r) {
		// A SQLite-backed Prefect has one writer at a time; a write transaction that cannot
		// get the lock within SQLite's busy timeout fails with "database is locked", which
		// Prefect answers with 503.
		switch s.acquireWriteLock(ctx, msDur(float64(cfg.WriteLockWaitMs))) {
		case lockGone:
			if release != nil {
				release()
			}
			return nil, true, outGone
		case lockBusy:
			if release != nil {
				release()
			}
			s.stats.add(func(s *stats) { s.faults.Locked++ })
			writeResp(w, response{status: 503, body: []byte(`{"exception_message":"Service Unavailable"}`)})
			return nil, true, 503
		}
		inner := release
		release = func() {
			<-s.writeLock
			if inner != nil {
				inner()
			}
		}
		if !sleepCtx(ctx, time.Duration(cfg.WriteLockMs)*time.Millisecond) {
			release()
			return nil, true, outGone
		}
	}
	return release, false, 0
}

type lockResult int

const (
	lockHeld lockResult = iota
	lockBusy
	lockGone
)

// acquireWriteLock takes the write lock, waiting up to wait for it (SQLite's busy timeout).
func (s *Server) acquireWriteLock(ctx context.Context, wait time.Duration) lockResult {
	select {
	case s.writeLock <- struct{}{}:
		return lockHeld
	default:
	}
	if wait <= 0 {
		return lockBusy
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.writeLock <- struct{}{}:
		return lockHeld
	case <-t.C:
		return lockBusy
	case <-ctx.Done():
		return lockGone
	}
}

// isWrite: a request that writes to Prefect's database (filter reads are POSTs too).
func isWrite(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPatch && r.Method != http.MethodDelete {
		return false
	}
	return !strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/filter")
}

// limiter is the capacity model: at most Capacity requests are served at
// once; the rest wait in FIFO order, up to QueueLimit of them.
type limiter struct {
	mu         sync.Mutex
	serving    int64
	waiters    []*waiter
	peakServed int64
	peakQueue  int64
}

type waiter struct {
	ch      chan struct{}
	granted bool
	queued  int // queue length when the slot was granted
}

type admitResult int

const (
	admitOK admitResult = iota
	admitOverflow
	admitGone
)

// acquire takes a slot, waiting in the queue if needed. It reads the current
// config through cfgNow so that capacity changes apply to waiting requests.
// The int is the queue length when service started.
func (l *limiter) acquire(ctx context.Context, cfgNow func() *Config) (admitResult, int) {
	cfg := cfgNow()
	l.mu.Lock()
	if cfg.Capacity <= 0 || (l.serving < cfg.Capacity && len(l.waiters) == 0) {
		l.serving++
		l.peakServed = max(l.peakServed, l.serving)
		l.mu.Unlock()
		return admitOK, 0
	}
	if cfg.QueueLimit > 0 && int64(len(l.waiters)) >= cfg.QueueLimit {
		l.mu.Unlock()
		return admitOverflow, 0
	}
	w := &waiter{ch: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.peakQueue = max(l.peakQueue, int64(len(l.waiters)))
	l.mu.Unlock()
	select {
	case <-w.ch:
		return admitOK, w.queued
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted {
			l.mu.Unlock()
			l.release(cfgNow())
			return admitGone, 0
		}
		for i, x := range l.waiters {
			if x == w {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
		return admitGone, 0
	}
}

// release frees a slot, handing it straight to the oldest waiter if the
// (possibly changed) capacity allows.
func (l *limiter) release(cfg *Config) {
	l.mu.Lock()
	l.serving--
	l.grantLocked(cfg)
	l.mu.Unlock()
}

// wake admits waiters after a config change (capacity raised or removed).
func (l *limiter) wake(cfg *Config) {
	l.mu.Lock()
	l.grantLocked(cfg)
	l.mu.Unlock()
}

func (l *limiter) grantLocked(cfg *Config) {
	for len(l.waiters) > 0 && (cfg.Capacity <= 0 || l.serving < cfg.Capacity) {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		w.granted = true
		w.queued = len(l.waiters)
		l.serving++
		l.peakServed = max(l.peakServed, l.serving)
		close(w.ch)
	}
}

func (l *limiter) peaks() (served, queue int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peakServed, l.peakQueue
}

func (l *limiter) resetPeaks() {
	l.mu.Lock()
	l.peakServed, l.peakQueue = l.serving, int64(len(l.waiters))
	l.mu.Unlock()
}
