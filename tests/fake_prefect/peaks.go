package main

import (
	"sort"
	"strings"
	"time"
)

// unfinishedUntil is when the run reached a final state: the schedule's end,
// or a final (or cancelling) state set through set_state. ok=false: the run
// is not final yet, nor scheduled to be.
func (r *flowRun) unfinishedUntil() (t time.Time, ok bool) {
	if !r.endedAt.IsZero() {
		return r.endedAt, true
	}
	m := r.manual
	if r.hasSchedule && (m == nil || !r.tFinal.After(m.at)) {
		return r.tFinal, true
	}
	if m != nil {
		if isFinal(m.typ) {
			return m.at, true
		}
		if m.cancels {
			return m.cancelAt, true
		}
	}
	return time.Time{}, false
}

// setManual gives the run a state by hand, keeping when it first became
// final: a later state (a second COMPLETED, a CANCELLING of a finished run)
// does not move the end of the interval it was unfinished. A run made
// unfinished again after that is not counted a second time.
func (r *flowRun) setManual(ms *manualState, now time.Time) {
	if r.endedAt.IsZero() {
		if t, ok := r.unfinishedUntil(); ok && !t.After(now) {
			r.endedAt = t
		}
	}
	r.manual = ms
}

// peaksJSON is the /_fake/peaks document: for each floodgate batch tag
// ("floodgate-batch:<id>") and each flow, the largest number of its runs that
// were unfinished (created, not yet in a final state) at the same instant.
// It is exact, not sampled: each run's state is a timeline fixed at creation
// (or by set_state), so the peak is a sweep over those intervals, and a
// breach of max_running however short shows.
type peaksJSON struct {
	ByTag  map[string]int `json:"unfinished_peak_by_tag"`
	ByFlow map[string]int `json:"unfinished_peak_by_flow"`
}

type interval struct {
	from, to time.Time
	open     bool // not final yet: counts until now
}

func peakOverlap(iv []interval, now time.Time) int {
	type ev struct {
		at    time.Time
		delta int
	}
	evs := make([]ev, 0, 2*len(iv))
	for _, x := range iv {
		evs = append(evs, ev{x.from, +1})
		to := x.to
		if x.open {
			to = now.Add(time.Hour) // still unfinished
		}
		evs = append(evs, ev{to, -1})
	}
	// At the same instant an end comes before a start: a run that ends lets
	// the next one start, they do not overlap.
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].at.Equal(evs[j].at) {
			return evs[i].at.Before(evs[j].at)
		}
		return evs[i].delta < evs[j].delta
	})
	cur, peak := 0, 0
	for _, e := range evs {
		cur += e.delta
		peak = max(peak, cur)
	}
	return peak
}

// Peaks computes the /_fake/peaks document.
func (s *Server) Peaks() peaksJSON {
	now := s.now()
	byTag := map[string][]interval{}
	byFlow := map[string][]interval{}
	s.store.mu.Lock()
	for _, r := range s.store.runs {
		to, ok := r.unfinishedUntil()
		x := interval{from: r.created, to: to, open: !ok}
		byFlow[r.flowID] = append(byFlow[r.flowID], x)
		for _, t := range r.tags {
			if strings.HasPrefix(t, "floodgate-batch:") {
				byTag[t] = append(byTag[t], x)
			}
		}
	}
	s.store.mu.Unlock()
	out := peaksJSON{ByTag: map[string]int{}, ByFlow: map[string]int{}}
	for k, v := range byTag {
		out.ByTag[k] = peakOverlap(v, now)
	}
	for k, v := range byFlow {
		out.ByFlow[k] = peakOverlap(v, now)
	}
	return out
}
