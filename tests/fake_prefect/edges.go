package main

import (
	"net/http"
	"sort"
	"time"
)

// Prefect at its edges (issue 17): what happens to a run after it is created, when the server
// or its workers misbehave. Each behaviour is off by default and fixed into the run's timeline
// when the run is created (like the rest of the schedule), in this order:
//
//  1. never starting (never_start_rate / __fake_never_start): the run stays SCHEDULED (no
//     worker polls its pool) or PENDING (the worker died after claiming it) for good;
//  2. a worker start rate (start_rate, runs/s): runs leave SCHEDULED one after the other, at
//     most start_rate a second, in creation order;
//  3. a deployment concurrency limit (concurrency_limit on the deployment): a run finding all
//     slots taken waits as SCHEDULED "AwaitingConcurrencySlot" until the earliest slot frees,
//     as Prefect's SecureFlowConcurrencySlots rule (server/orchestration/core_policy.py)
//     reschedules it; a slot is held from PENDING to the final state;
//  4. crashes of runs started in a burst (burst_crash_starts): a run whose RUNNING start has
//     burst_crash_starts or more starts in the second before it crashes crash_after_ms later,
//     as the seed's children did when a hundred opened their events websocket together.
//
// Simplifications (timelines are fixed at creation, not re-planned): a run cancelled or deleted
// later keeps its start slot and its concurrency slot until its planned end.

// farFuture stands for "never" in a timeline.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// crashMessage is the state message Prefect's process worker gives a run whose process exited
// before the flow finished (workers/process.py, via the CRASHED proposal in workers/base.py).
const crashMessage = "Flow run infrastructure exited with non-zero status code 1."

// edgeState is the store's memory for the behaviours above; reset with the store.
type edgeState struct {
	nextStart time.Time              // the worker's next free start slot (start_rate)
	slots     map[string][]time.Time // deployment id -> release time of each concurrency slot
	starts    []time.Time            // RUNNING starts of every run so far, sorted
}

func (e *edgeState) reset() {
	e.nextStart = time.Time{}
	e.slots = map[string][]time.Time{}
	e.starts = nil
}

// shift moves the run's timeline from tPending on by d.
func (r *flowRun) shift(d time.Duration) {
	if d <= 0 {
		return
	}
	r.tPending = r.tPending.Add(d)
	if r.tRunning != farFuture {
		r.tRunning = r.tRunning.Add(d)
	}
	if r.tFinal != farFuture {
		r.tFinal = r.tFinal.Add(d)
	}
}

// shapeRun applies the edge behaviours to a new run before it is stored. Must be called with
// mu held.
func (st *store) shapeRun(r *flowRun, d *deployment, sc *Schedule, ov fakeOverrides, counters *stats) {
	if !r.hasSchedule {
		return // SCHEDULED for ever already: takes no start slot and no concurrency slot
	}
	var s Schedule
	if sc != nil {
		s = *sc
	}
	stuck := ov.neverStart
	if stuck == "" && s.NeverStartRate > 0 && roll(s.NeverStartRate) {
		stuck = s.NeverStartState
		if stuck == "" {
			stuck = stScheduled
		}
	}
	if stuck == stScheduled {
		r.tPending, r.tRunning, r.tFinal = farFuture, farFuture, farFuture
		return
	}
	if stuck == stPending {
		r.tRunning, r.tFinal = farFuture, farFuture
	}
	if s.StartRate > 0 {
		gap := time.Duration(float64(time.Second) / s.StartRate)
		if st.edges.nextStart.After(r.tPending) {
			r.shift(st.edges.nextStart.Sub(r.tPending))
		}
		st.edges.nextStart = r.tPending.Add(gap)
	}
	slot := -1
	if d.ConcurrencyLimit > 0 {
		slots := st.edges.slots[d.ID]
		if slots == nil {
			slots = make([]time.Time, d.ConcurrencyLimit)
			st.edges.slots[d.ID] = slots
		}
		slot = 0
		for i := range slots {
			if slots[i].Before(slots[slot]) {
				slot = i
			}
		}
		if slots[slot].After(r.tPending) {
			r.tAwait = r.tPending
			r.shift(slots[slot].Sub(r.tPending))
		}
	}
	if r.tRunning != farFuture && s.BurstCrashStarts > 0 {
		lo := sort.Search(len(st.edges.starts), func(i int) bool {
			return st.edges.starts[i].After(r.tRunning.Add(-time.Second))
		})
		hi := sort.Search(len(st.edges.starts), func(i int) bool {
			return st.edges.starts[i].After(r.tRunning)
		})
		if hi-lo >= s.BurstCrashStarts && ov.final == "" {
			r.final = stCrashed
			r.finalMsg = crashMessage
			r.tFinal = r.tRunning.Add(time.Duration(s.CrashAfterMs) * time.Millisecond)
			counters.add(func(s *stats) { s.faults.BurstCrash++ })
		}
		st.edges.starts = append(st.edges.starts, time.Time{})
		copy(st.edges.starts[hi+1:], st.edges.starts[hi:])
		st.edges.starts[hi] = r.tRunning
	}
	if slot >= 0 {
		st.edges.slots[d.ID][slot] = r.tFinal
	}
}

// deleteRun removes a run from every index, as Prefect's DELETE /flow_runs/{id} does: reads
// answer 404 and filters no longer return it. Must be called with mu held.
func (st *store) deleteRun(id string) bool {
	r := st.runByID[id]
	if r == nil {
		return false
	}
	delete(st.runByID, id)
	for i, x := range st.runs {
		if x == r {
			st.runs = append(st.runs[:i], st.runs[i+1:]...)
			break
		}
	}
	if r.idemKey != nil {
		if st.idem[r.flowID+"\x00"+*r.idemKey] == r {
			delete(st.idem, r.flowID+"\x00"+*r.idemKey)
		}
		runs := st.byKey[*r.idemKey]
		for i, x := range runs {
			if x == r {
				st.byKey[*r.idemKey] = append(runs[:i:i], runs[i+1:]...)
				break
			}
		}
		if len(st.byKey[*r.idemKey]) == 0 {
			delete(st.byKey, *r.idemKey)
		}
	}
	if r.parentTaskRunID != nil && st.byParentTask[*r.parentTaskRunID] == r {
		delete(st.byParentTask, *r.parentTaskRunID)
	}
	return true
}

// hDeleteFlowRun is Prefect's DELETE /flow_runs/{id} (server/api/flow_runs.py
// delete_flow_run): 204, or 404 "Flow run not found".
func hDeleteFlowRun(s *Server, _ *http.Request, args []string, _ []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	s.store.mu.Lock()
	ok := s.store.deleteRun(id)
	s.store.mu.Unlock()
	if !ok {
		return respFlowRunNotFound
	}
	return response{status: 204}
}

// bulkWorkQueueError is the FAILED element of a bulk create that names a work queue on a
// deployment without a work pool (deployments.py, bulk_create_flow_runs_from_deployment).
func bulkWorkQueueError(queue string) string {
	return "Cannot create flow run in work queue " + queue +
		" because deployment is not associated with a work pool."
}

// singleWorkQueueError is the 400 detail of the same case on the single create
// (deployments.py, create_flow_run_from_deployment).
func singleWorkQueueError(queue, deploymentID string) response {
	return detailResp(400, "Cannot create flow run in work queue "+queue+" because deployment "+
		deploymentID+" is not associated with a work pool. Please remove work_pool_name and try again.")
}
