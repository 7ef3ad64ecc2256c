package main

import (
	"net/http"
	"time"
)

// POST /flow_runs/{id}/set_state, after Prefect's CoreFlowPolicy.

// setStateRecord is one set_state request that passed validation, as listed
// by GET /_fake/set_states.
type setStateRecord struct {
	FlowRunID    string `json:"flow_run_id"`
	Type         string `json:"type"`
	Name         string `json:"name"`
	Message      string `json:"message"`
	TransitionID string `json:"transition_id"`
	Force        bool   `json:"force"`
	FromType     string `json:"from_type"` // the run's state type when the request arrived
	Status       string `json:"status"`    // ACCEPT, REJECT, ABORT or NOT_FOUND
	At           string `json:"at"`
}

type setStateResult struct {
	Status  string            `json:"status"`
	State   *stateJSON        `json:"state"`
	Details map[string]string `json:"details"`
}

var validStates = map[string]bool{stScheduled: true, stPending: true, stRunning: true, stCompleted: true,
	stFailed: true, stCancelled: true, stCrashed: true, stPaused: true, stCancelling: true}

func hSetState(s *Server, _ *http.Request, args []string, body []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	m, errs := decodeObject(body, []any{"body"}, false)
	if errs != nil {
		return resp422(errs...)
	}
	if errs = checkKeys(m, setOf("state", "force"), []any{"body"}); errs != nil {
		return resp422(errs...)
	}
	force := optBool(m, "force", []any{"body"}, &errs)
	rawState, ok := m.get("state")
	if !ok || isNull(rawState) {
		errs = append(errs, valErr{Loc: []any{"body", "state"}, Msg: "Field required", Type: "missing"})
		return resp422(errs...)
	}
	sm, e := decodeObject(rawState, []any{"body", "state"}, true)
	if e != nil {
		return resp422(e...)
	}
	sat := []any{"body", "state"}
	typ := optString(sm, "type", sat, &errs)
	name := optString(sm, "name", sat, &errs)
	msg := optString(sm, "message", sat, &errs)
	var tid string
	if d := optObject(sm, "state_details", sat, &errs); d != nil {
		dm, _ := decodeObject(d, loc(sat, "state_details"), true)
		if t := optString(dm, "transition_id", loc(sat, "state_details"), &errs); t != nil {
			tid = *t
		}
	}
	if typ == nil || !validStates[*typ] {
		errs = append(errs, valErr{Loc: loc(sat, "type"),
			Msg: "Input should be 'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED' or 'CANCELLING'", Type: "enum"})
	}
	if errs != nil {
		return resp422(errs...)
	}
	forced := force != nil && *force
	prop := manualState{typ: *typ, name: stateNames[*typ], tid: tid}
	if name != nil && *name != "" {
		prop.name = *name
	}
	if msg != nil {
		prop.message = *msg
	}
	now := s.now()
	prop.at = now
	cancelDelay := time.Duration(s.cfg.Load().CancelDelayMs) * time.Millisecond

	s.stats.add(func(s *stats) { s.setState++ })
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := setStateRecord{FlowRunID: id, Type: prop.typ, Name: prop.name, Message: prop.message,
		TransitionID: tid, Force: forced, At: ts(now)}
	record := func(status string) { rec.Status = status; st.setStates = append(st.setStates, rec) }
	r := st.runByID[id]
	if r == nil {
		record("NOT_FOUND")
		return respFlowRunNotFound
	}
	cur := r.stateAt(now)
	rec.FromType = cur.typ
	reject := func(state runState, reason string) response {
		record("REJECT")
		sj := state.json()
		return jsonResp(200, setStateResult{Status: "REJECT", State: &sj,
			Details: map[string]string{"type": "reject_details", "reason": reason}})
	}
	accept := func(ms *manualState) response {
		record("ACCEPT")
		r.setManual(ms, now)
		sj := runState{typ: ms.typ, name: ms.name, message: ms.message, at: ms.at, tid: ms.tid}.json()
		return jsonResp(201, setStateResult{Status: "ACCEPT", State: &sj, Details: map[string]string{"type": "accept_details"}})
	}
	// The rules below follow Prefect's CoreFlowPolicy, in its order.
	if !forced {
		if cur.tid != "" && tid != "" && cur.tid == tid { // PreventDuplicateTransitions
			return reject(cur, "This run has already made this state transition.")
		}
		if isFinal(cur.typ) { // HandleFlowTerminalStateTransitions (simplified)
			record("ABORT")
			return jsonResp(200, setStateResult{Status: "ABORT",
				Details: map[string]string{"type": "abort_details", "reason": "Run is already in terminal state " + cur.typ + "."}})
		}
		if cur.typ == stCancelling && prop.typ != stCancelled { // EnforceCancellingToCancelledTransition
			return reject(cur, "Cannot transition flows that are cancelling to a state other than Cancelled.")
		}
	}
	if prop.typ == stCancelling {
		if cur.typ == stScheduled || cur.typ == stPaused { // BypassCancellingFlowRunsWithNoInfra
			r.setManual(&manualState{typ: stCancelled, name: "Cancelled", at: now}, now)
			return reject(r.stateAt(now), "Scheduled flow run has no infrastructure to terminate.")
		}
		// A worker would now kill the infrastructure and mark the run
		// CANCELLED; the fake does so after cancel_delay_ms.
		prop.cancels = true
		prop.cancelAt = now.Add(cancelDelay)
	}
	return accept(&prop)
}
