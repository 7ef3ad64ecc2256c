package main

import (
	"encoding/json"
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
	prop, forced, tid, errs := parseProposal(m)
	if errs != nil {
		return resp422(errs...)
	}
	res, found := s.applySetState(id, prop, forced, tid)
	if !found {
		return respFlowRunNotFound
	}
	status := 200
	if res.Status == "ACCEPT" {
		status = 201
	}
	return jsonResp(status, res)
}

// applySetState proposes `prop` to run `id` under the policy's rules and records the request;
// found=false when there is no such run.
func (s *Server) applySetState(id string, prop manualState, forced bool, tid string) (setStateResult, bool) {
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
		return setStateResult{}, false
	}
	cur := r.stateAt(now)
	rec.FromType = cur.typ
	reject := func(state runState, reason string) (setStateResult, bool) {
		record("REJECT")
		sj := state.json()
		return setStateResult{Status: "REJECT", State: &sj,
			Details: map[string]string{"type": "reject_details", "reason": reason}}, true
	}
	// The rules below follow Prefect's CoreFlowPolicy, in its order.
	if !forced {
		if cur.tid != "" && tid != "" && cur.tid == tid { // PreventDuplicateTransitions
			return reject(cur, "This run has already made this state transition.")
		}
		if isFinal(cur.typ) { // HandleFlowTerminalStateTransitions (simplified)
			record("ABORT")
			return setStateResult{Status: "ABORT",
				Details: map[string]string{"type": "abort_details", "reason": "Run is already in terminal state " + cur.typ + "."}}, true
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
	record("ACCEPT")
	r.setManual(&prop, now)
	sj := runState{typ: prop.typ, name: prop.name, message: prop.message, at: prop.at, tid: prop.tid}.json()
	return setStateResult{Status: "ACCEPT", State: &sj, Details: map[string]string{"type": "accept_details"}}, true
}

// parseProposal reads a set_state body's "state" and "force" (validated as Prefect does).
func parseProposal(m obj) (manualState, bool, string, []valErr) {
	var errs []valErr
	force := optBool(m, "force", []any{"body"}, &errs)
	rawState, ok := m.get("state")
	if !ok || isNull(rawState) {
		errs = append(errs, valErr{Loc: []any{"body", "state"}, Msg: "Field required", Type: "missing"})
		return manualState{}, false, "", errs
	}
	sm, e := decodeObject(rawState, []any{"body", "state"}, true)
	if e != nil {
		return manualState{}, false, "", e
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
		return manualState{}, false, "", errs
	}
	forced := force != nil && *force
	prop := manualState{typ: *typ, name: stateNames[*typ], tid: tid}
	if name != nil && *name != "" {
		prop.name = *name
	}
	if msg != nil {
		prop.message = *msg
	}
	return prop, forced, tid, nil
}

// hBulkSetState is POST /flow_runs/bulk_set_state (Prefect >= 3.6.16): the proposal for each run
// the filter names (only flow_runs.id.any_ here), at most `limit` (50 at most), each under the
// same rules as set_state; runs not found are absent from the results.
func hBulkSetState(s *Server, _ *http.Request, _ []string, body []byte) response {
	if !s.cfg.Load().BulkSetStateEnabled {
		return detailResp(405, "Method Not Allowed")
	}
	m, errs := decodeObject(body, []any{"body"}, false)
	if errs != nil {
		return resp422(errs...)
	}
	if errs = checkKeys(m, setOf("flow_runs", "state", "force", "limit"), []any{"body"}); errs != nil {
		return resp422(errs...)
	}
	var filter struct {
		ID struct {
			Any []string `json:"any_"`
		} `json:"id"`
	}
	raw, _ := m.get("flow_runs")
	if err := json.Unmarshal(raw, &filter); err != nil || len(filter.ID.Any) == 0 {
		return resp422(valErr{Loc: []any{"body", "flow_runs"}, Msg: "the fake takes only id.any_", Type: "value_error"})
	}
	if len(filter.ID.Any) > 50 {
		return resp422(valErr{Loc: []any{"body", "limit"}, Msg: "Input should be less than or equal to 50", Type: "less_than_equal"})
	}
	prop, forced, tid, errs := parseProposal(m)
	if errs != nil {
		return resp422(errs...)
	}
	type result struct {
		FlowRunID string `json:"flow_run_id"`
		setStateResult
	}
	results := []result{}
	for _, id := range filter.ID.Any {
		if res, found := s.applySetState(id, prop, forced, tid); found {
			results = append(results, result{FlowRunID: id, setStateResult: res})
		}
	}
	return jsonResp(200, map[string]any{"results": results})
}
