package main

import (
	"strconv"
	"sync"
	"time"
)

const maxBuckets = 24 * 3600 // one day of per-second buckets; later ones pile into the last

type bucket struct {
	T            int64 `json:"t"`
	Requests     int64 `json:"requests"`
	Created      int64 `json:"created"`
	Errors       int64 `json:"errors"`
	InFlightPeak int64 `json:"in_flight_peak"`
}

type faultCounts struct {
	Error        int64 `json:"error"`
	R429         int64 `json:"429"`
	Drop         int64 `json:"drop"`
	LostResponse int64 `json:"lost_response"`
	Overflow     int64 `json:"overflow"`
	Locked       int64 `json:"locked"`
	BulkItem     int64 `json:"bulk_item"`   // runs of a bulk create failed with bulk_item_error
	BurstCrash   int64 `json:"burst_crash"` // runs set to crash because they started in a burst
}

// stats is guarded by its own mutex, separate from the store's, so that
// counting never waits behind a long filter scan.
type stats struct {
	mu             sync.Mutex
	start          time.Time
	requests       map[string]int64
	statuses       map[int]int64
	faults         faultCounts
	total          int64
	inFlight       int64
	peakInFlight   int64
	created        int64
	existing       int64
	runsWithoutKey int64
	taskRuns       int64
	setState       int64
	filterMaxIDs   int64
	buckets        []bucket
}

func newStats(now time.Time) *stats {
	s := &stats{}
	s.reset(now)
	return s
}

func (s *stats) reset(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start = now
	s.requests = map[string]int64{}
	s.statuses = map[int]int64{}
	s.faults = faultCounts{}
	s.total, s.created, s.existing, s.runsWithoutKey, s.taskRuns, s.setState = 0, 0, 0, 0, 0, 0
	s.filterMaxIDs = 0
	s.peakInFlight = s.inFlight // requests still in flight stay counted
	s.buckets = nil
}

// bucketLocked returns the timeline bucket for now; mu must be held.
func (s *stats) bucketLocked(now time.Time) *bucket {
	i := int64(now.Sub(s.start) / time.Second)
	if i < 0 {
		i = 0
	}
	if i >= maxBuckets {
		i = maxBuckets - 1
	}
	for int64(len(s.buckets)) <= i {
		s.buckets = append(s.buckets, bucket{T: int64(len(s.buckets))})
	}
	return &s.buckets[i]
}

// begin counts an arriving /api request.
func (s *stats) begin(label string, now time.Time) {
	s.mu.Lock()
	s.total++
	s.requests[label]++
	s.inFlight++
	if s.inFlight > s.peakInFlight {
		s.peakInFlight = s.inFlight
	}
	b := s.bucketLocked(now)
	b.Requests++
	if s.inFlight > b.InFlightPeak {
		b.InFlightPeak = s.inFlight
	}
	s.mu.Unlock()
}

// Outcome codes for end() besides a plain HTTP status.
const (
	outDrop = -1 // connection closed without an answer
	outLost = -2 // create performed, then the connection closed
	outGone = -3 // the client went away first
)

// end counts a finished /api request: status > 0 is the HTTP status sent.
func (s *stats) end(status int, now time.Time) {
	s.mu.Lock()
	s.inFlight--
	if status > 0 {
		s.statuses[status]++
	}
	if status == 429 || status >= 500 || status == outDrop || status == outLost {
		s.bucketLocked(now).Errors++
	}
	s.mu.Unlock()
}

func (s *stats) add(f func(s *stats)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

// addCreated counts newly created and idempotently matched runs.
func (s *stats) addCreated(created, existing, withoutKey int64, now time.Time) {
	s.mu.Lock()
	s.created += created
	s.existing += existing
	s.runsWithoutKey += withoutKey
	if created > 0 {
		s.bucketLocked(now).Created += created
	}
	s.mu.Unlock()
}

type statsJSON struct {
	Requests       map[string]int64 `json:"requests"`
	Statuses       map[string]int64 `json:"statuses"`
	Runs           int              `json:"runs"`
	Created        int64            `json:"created"`
	Existing       int64            `json:"existing"`
	RunsWithoutKey int64            `json:"runs_without_key"`
	TaskRuns       int64            `json:"task_runs"`
	SetState       int64            `json:"set_state"`
	FilterMaxIDs   int64            `json:"filter_max_ids"`
	Faults         faultCounts      `json:"faults"`
	InFlight       int64            `json:"in_flight"`
	PeakInFlight   int64            `json:"peak_in_flight"`
	PeakServed     int64            `json:"peak_served"`
	PeakQueue      int64            `json:"peak_queue"`
	TotalRequests  int64            `json:"total_requests"`
}

func (s *stats) snapshot() statsJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := statsJSON{
		Requests: make(map[string]int64, len(s.requests)), Statuses: make(map[string]int64, len(s.statuses)),
		Created: s.created, Existing: s.existing, RunsWithoutKey: s.runsWithoutKey, TaskRuns: s.taskRuns,
		SetState: s.setState, FilterMaxIDs: s.filterMaxIDs, Faults: s.faults, InFlight: s.inFlight, PeakInFlight: s.peakInFlight,
		TotalRequests: s.total,
	}
	for k, v := range s.requests {
		out.Requests[k] = v
	}
	for k, v := range s.statuses {
		out.Statuses[strconv.Itoa(k)] = v
	}
	return out
}

func (s *stats) timeline() []bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bucket, len(s.buckets))
	copy(out, s.buckets)
	return out
}
