package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Tests of the behaviours of edges.go (issue 17), each switched on through /_fake/config or
// /_fake/deployments, on the harness's manual clock.

func (h *harness) read(id string) run {
	h.t.Helper()
	st, out, _ := h.do("GET", "/api/flow_runs/"+id, nil)
	expect(h.t, st, out, 200)
	return decode[run](h.t, out)
}

func (h *harness) createN(path string, n int, body string) []string {
	h.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		st, out, _ := h.do("POST", path, body)
		expect(h.t, st, out, 201)
		ids[i] = decode[run](h.t, out).ID
	}
	return ids
}

func (h *harness) states(ids []string) string {
	h.t.Helper()
	parts := make([]string, len(ids))
	for i, id := range ids {
		r := h.read(id)
		parts[i] = r.StateType + "/" + r.StateName
	}
	return strings.Join(parts, " ")
}

func TestBurstOfStartsCrashes(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"running_ms":1000,"burst_crash_starts":3,"crash_after_ms":200}}`)
	ids := h.createN(demoCreate, 5, `{}`)
	h.clock.advance(300 * time.Millisecond)
	// Three starts fit in a second; the fourth and fifth find three before them and crash.
	if got := h.states(ids); got != "RUNNING/Running RUNNING/Running RUNNING/Running CRASHED/Crashed CRASHED/Crashed" {
		t.Fatalf("got %s", got)
	}
	crashed := h.read(ids[4])
	if crashed.State["message"] != crashMessage || crashed.StartTime == nil || crashed.EndTime == nil {
		t.Fatalf("crashed run %+v", crashed.State)
	}
	if s := h.stats(); s.Faults.BurstCrash != 2 {
		t.Fatalf("burst_crash %d", s.Faults.BurstCrash)
	}
	// A second later the window is clear again.
	h.clock.advance(time.Second)
	later := h.createN(demoCreate, 1, `{}`)
	if got := h.states(later); got != "RUNNING/Running" {
		t.Fatalf("got %s", got)
	}

	// The same runs started at 2 a second never crash: pacing the starts avoids the crashes.
	h.srv.Reset()
	h.config(`{"run_schedule":{"running_ms":1000,"burst_crash_starts":3,"start_rate":2}}`)
	ids = h.createN(demoCreate, 8, `{}`)
	h.clock.advance(10 * time.Second)
	if got := h.states(ids); strings.Contains(got, "CRASHED") {
		t.Fatalf("paced starts crashed: %s", got)
	}
}

func TestRunsThatNeverStart(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"scheduled_ms":100,"pending_ms":100,"running_ms":100}}`)
	stuckScheduled := h.createN(demoCreate, 1, `{"parameters":{"__fake_never_start":"SCHEDULED"}}`)
	stuckPending := h.createN(demoCreate, 1, `{"parameters":{"__fake_never_start":"pending"}}`)
	normal := h.createN(demoCreate, 1, `{}`)
	h.clock.advance(time.Hour)
	want := "SCHEDULED/Scheduled PENDING/Pending COMPLETED/Completed"
	if got := h.states(append(append(stuckScheduled, stuckPending...), normal...)); got != want {
		t.Fatalf("got %s want %s", got, want)
	}

	// By rate, named Late as a real server names runs past their start.
	h.config(`{"run_schedule":{"scheduled_ms":100,"late":true,"never_start_rate":1}}`)
	ids := h.createN(demoCreate, 3, `{}`)
	h.clock.advance(time.Hour)
	if got := h.states(ids); got != "SCHEDULED/Late SCHEDULED/Late SCHEDULED/Late" {
		t.Fatalf("got %s", got)
	}
	h.config(`{"run_schedule":{"never_start_rate":1,"never_start_state":"PENDING"}}`)
	ids = h.createN(demoCreate, 2, `{}`)
	h.clock.advance(time.Hour)
	if got := h.states(ids); got != "PENDING/Pending PENDING/Pending" {
		t.Fatalf("got %s", got)
	}
	if st, out, _ := h.do("POST", "/_fake/config", `{"run_schedule":{"never_start_state":"RUNNING"}}`); st != 400 {
		t.Fatalf("bad never_start_state accepted: %d %s", st, out)
	}
}

func TestWorkersStartAtAFixedRate(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"pending_ms":100,"running_ms":60000,"start_rate":4}}`)
	ids := h.createN(demoCreate, 20, `{}`)
	started := func() int {
		n := 0
		for _, id := range ids {
			if h.read(id).StateType != "SCHEDULED" {
				n++
			}
		}
		return n
	}
	// Starts at 0, 0.25, 0.5, ... s: after t seconds, floor(4t)+1 runs have left SCHEDULED.
	for _, step := range []struct {
		at   time.Duration
		want int
	}{{0, 1}, {240 * time.Millisecond, 1}, {10 * time.Millisecond, 2}, {time.Second, 6}, {3 * time.Second, 18}, {time.Second, 20}} {
		h.clock.advance(step.at)
		if got := started(); got != step.want {
			t.Fatalf("after +%v: %d started, want %d", step.at, got, step.want)
		}
	}
	// SCHEDULED -> PENDING -> RUNNING, in order.
	h.clock.advance(time.Second)
	if got := h.states(ids[19:]); got != "RUNNING/Running" {
		t.Fatalf("got %s", got)
	}
}

func TestDeletedRunsAreGone(t *testing.T) {
	h := newHarness(t)
	_, out, _ := h.do("POST", demoCreate, `{"idempotency_key":"k1"}`)
	gone := decode[run](t, out).ID
	_, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"k2"}`)
	kept := decode[run](t, out).ID

	st, out, _ := h.do("DELETE", "/api/flow_runs/"+gone, nil)
	expect(t, st, out, 204)
	st, out, _ = h.do("GET", "/api/flow_runs/"+gone, nil)
	expect(t, st, out, 404)
	if string(out) != `{"detail":"Flow run not found"}` {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("DELETE", "/api/flow_runs/"+gone, nil)
	expect(t, st, out, 404)
	for _, filter := range []string{
		fmt.Sprintf(`{"flow_runs":{"id":{"any_":["%s","%s"]}}}`, gone, kept),
		`{"flow_runs":{"idempotency_key":{"any_":["k1","k2"]}}}`,
		`{}`,
	} {
		st, out, _ = h.do("POST", "/api/flow_runs/filter", filter)
		expect(t, st, out, 200)
		if runs := decode[[]run](t, out); len(runs) != 1 || runs[0].ID != kept {
			t.Fatalf("filter %s: %s", filter, out)
		}
	}
	// The key is free again, as the row holding it is gone.
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"k1"}`)
	expect(t, st, out, 201)

	// Deleted from outside the API (the UI, a retention job): not counted.
	before := h.stats().TotalRequests
	st, out, _ = h.do("DELETE", "/_fake/runs/"+kept, nil)
	expect(t, st, out, 204)
	st, _, _ = h.do("GET", "/api/flow_runs/"+kept, nil)
	expect(t, st, nil, 404)
	if got := h.stats().TotalRequests; got != before+1 {
		t.Fatalf("control delete counted: %d -> %d", before, got)
	}
	st, _, _ = h.do("DELETE", "/_fake/runs/"+kept, nil)
	expect(t, st, nil, 404)
}

func TestDeploymentConcurrencySlots(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("POST", "/_fake/deployments", `{"flow_name":"f","name":"limited","concurrency_limit":2}`)
	expect(t, st, out, 201)
	dep := decode[map[string]any](t, out)
	if dep["concurrency_limit"] != float64(2) {
		t.Fatalf("deployment %s", out)
	}
	create := "/api/deployments/" + dep["id"].(string) + "/create_flow_run"
	h.config(`{"run_schedule":{"pending_ms":100,"running_ms":900}}`)
	ids := h.createN(create, 5, `{}`)
	h.clock.advance(500 * time.Millisecond)
	if got := h.states(ids); got != "RUNNING/Running RUNNING/Running SCHEDULED/AwaitingConcurrencySlot "+
		"SCHEDULED/AwaitingConcurrencySlot SCHEDULED/AwaitingConcurrencySlot" {
		t.Fatalf("got %s", got)
	}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"flow_runs":{"state":{"name":{"any_":["AwaitingConcurrencySlot"]}}}}`)
	expect(t, st, out, 200)
	if n := len(decode[[]run](t, out)); n != 3 {
		t.Fatalf("%d awaiting a slot", n)
	}
	// Each slot frees after 1 s (100 ms PENDING + 900 ms RUNNING): never more than two active.
	h.clock.advance(time.Second)
	if got := h.states(ids); got != "COMPLETED/Completed COMPLETED/Completed RUNNING/Running RUNNING/Running "+
		"SCHEDULED/AwaitingConcurrencySlot" {
		t.Fatalf("got %s", got)
	}
	h.clock.advance(time.Second)
	if got := h.states(ids[4:]); got != "RUNNING/Running" {
		t.Fatalf("got %s", got)
	}
	// A run that never leaves PENDING holds its slot for good.
	h.srv.Reset()
	_, out, _ = h.do("POST", "/_fake/deployments", `{"flow_name":"f","name":"one","concurrency_limit":1}`)
	create = "/api/deployments/" + decode[map[string]any](t, out)["id"].(string) + "/create_flow_run"
	h.config(`{"run_schedule":{"running_ms":100}}`)
	ids = append(h.createN(create, 1, `{"parameters":{"__fake_never_start":"PENDING"}}`), h.createN(create, 1, `{}`)...)
	h.clock.advance(time.Hour)
	if got := h.states(ids); got != "PENDING/Pending SCHEDULED/AwaitingConcurrencySlot" {
		t.Fatalf("got %s", got)
	}
}

func TestBodyLimitAnswers413(t *testing.T) {
	h := newHarness(t)
	h.config(`{"max_body_bytes":2048}`)
	bulk := "/api/deployments/" + demoDeploymentID + "/create_flow_run/bulk"
	item := `{"parameters":{"blob":"` + strings.Repeat("x", 500) + `"}}`
	small := "[" + strings.Repeat(item+",", 2) + item + "]" // about 1.6 KB
	large := "[" + strings.Repeat(item+",", 4) + item + "]" // about 2.6 KB
	st, out, _ := h.do("POST", bulk, small)
	expect(t, st, out, 200)
	st, out, _ = h.do("POST", bulk, large)
	expect(t, st, out, 413)
	if string(out) != `{"detail":"Request Entity Too Large"}` {
		t.Fatalf("got %s", out)
	}
	// Nothing of the refused request was created.
	if s := h.stats(); s.Runs != 3 {
		t.Fatalf("%d runs", s.Runs)
	}
}

func TestPrefectsRealPerItemBulkErrors(t *testing.T) {
	h := newHarness(t)
	_, out, _ := h.do("POST", "/_fake/deployments", `{"flow_name":"served","name":"d","no_work_pool":true,`+
		`"required":["n"],"properties":{"n":{"type":"integer"}},"enforce_parameter_schema":true}`)
	id := decode[map[string]any](t, out)["id"].(string)
	st, out, _ := h.do("POST", "/api/deployments/"+id+"/create_flow_run/bulk",
		`[{"parameters":{"n":1}},{"parameters":{"n":1},"work_queue_name":"gpu"},{"parameters":{"n":"x"}},{"parameters":{}}]`)
	expect(t, st, out, 200)
	type result struct {
		FlowRunID *string `json:"flow_run_id"`
		Status    string  `json:"status"`
		Error     *string `json:"error"`
	}
	res := decode[struct{ Results []result }](t, out).Results
	want := []string{
		"",
		"Cannot create flow run in work queue gpu because deployment is not associated with a work pool.",
		"Parameter validation failed: Validation failed for field 'n'. Failure reason: 'x' is not of type 'integer'",
		"Parameter validation failed: Validation failed for field 'n'. Failure reason: 'n' is a required property",
	}
	if len(res) != len(want) || res[0].Status != "CREATED" {
		t.Fatalf("got %s", out)
	}
	for i, w := range want[1:] {
		r := res[i+1]
		if r.Status != "FAILED" || r.FlowRunID != nil || r.Error == nil || *r.Error != w {
			t.Fatalf("result %d: %s", i+1, out)
		}
	}
	// The single create answers the work-queue case with 400.
	st, out, _ = h.do("POST", "/api/deployments/"+id+"/create_flow_run", `{"parameters":{"n":1},"work_queue_name":"gpu"}`)
	expect(t, st, out, 400)
	if !strings.HasPrefix(string(out), `{"detail":"Cannot create flow run in work queue gpu because deployment `+id+
		` is not associated with a work pool.`) {
		t.Fatalf("got %s", out)
	}
	// Contention on PostgreSQL: any str(exc) the test names comes back verbatim.
	pg := "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class 'asyncpg.exceptions.DeadlockDetectedError'>: " +
		"deadlock detected\n(Background on this error at: https://sqlalche.me/e/20/dbapi)"
	h.config(`{"bulk_item_error_rate":1,"bulk_item_error":` + fmt.Sprintf("%q", pg) + `}`)
	st, out, _ = h.do("POST", "/api/deployments/"+demoDeploymentID+"/create_flow_run/bulk", `[{}]`)
	expect(t, st, out, 200)
	res = decode[struct{ Results []result }](t, out).Results
	if len(res) != 1 || res[0].Error == nil || *res[0].Error != pg {
		t.Fatalf("got %s", out)
	}
}

func TestAPIRootServesOnlyTheConfiguredCloudPrefix(t *testing.T) {
	h := newHarness(t)
	root := "/api/accounts/0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6/workspaces/1c8d2a5f-3e4b-4d6c-9fa0-b2c3d4e5f6a7"
	h.config(`{"api_root":"` + root + `"}`)
	st, out, _ := h.do("POST", root+"/deployments/"+demoDeploymentID+"/create_flow_run", `{}`)
	expect(t, st, out, 201)
	for _, p := range []string{"/api/deployments/" + demoDeploymentID + "/create_flow_run",
		"/api/accounts/x/workspaces/y/deployments/" + demoDeploymentID + "/create_flow_run"} {
		st, out, _ = h.do("POST", p, `{}`)
		expect(t, st, out, 404)
	}
	st, out, _ = h.do("GET", root+"/health", nil)
	expect(t, st, out, 200)
}

func TestRequestsOutsideTheAPIRootAreCounted(t *testing.T) {
	h := newHarness(t)
	h.config(`{"api_root":"/api/accounts/a/workspaces/w"}`)
	st, out, _ := h.do("GET", "/api/flow_runs/"+demoDeploymentID, nil)
	expect(t, st, out, 404)
	s := h.stats()
	if s.Requests["other"] != 1 || s.Statuses["404"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBulkSetStateProposesEachRunAndIsMissingWhenDisabled(t *testing.T) {
	h := newHarness(t)
	_, out, _ := h.do("POST", demoCreate, `{}`)
	sched := decode[run](t, out).ID
	h.config(`{"run_schedule":{"scheduled_ms":0,"pending_ms":0,"running_ms":60000}}`)
	_, out, _ = h.do("POST", demoCreate, `{}`)
	running := decode[run](t, out).ID
	body := fmt.Sprintf(`{"flow_runs":{"id":{"any_":[%q,%q,%q]}},"state":{"type":"CANCELLING","name":"Cancelling","state_details":{"transition_id":"33333333-3333-4333-8333-333333333333"}},"force":false,"limit":3}`,
		sched, running, "00000000-0000-4000-8000-00000000dead")
	st, out, _ := h.do("POST", "/api/flow_runs/bulk_set_state", body)
	expect(t, st, out, 200)
	res := decode[map[string][]map[string]any](t, out)["results"]
	// The deleted (unknown) run is absent; the scheduled one has no infrastructure (REJECT,
	// CANCELLED at once); the running one is accepted (CANCELLING).
	if len(res) != 2 || res[0]["flow_run_id"] != sched || res[0]["status"] != "REJECT" ||
		res[1]["flow_run_id"] != running || res[1]["status"] != "ACCEPT" {
		t.Fatalf("results %s", out)
	}
	// Again: nothing more is accepted (CANCELLED by now, cancel_delay_ms being 0).
	st, out, _ = h.do("POST", "/api/flow_runs/bulk_set_state", body)
	expect(t, st, out, 200)
	if res = decode[map[string][]map[string]any](t, out)["results"]; res[1]["status"] == "ACCEPT" {
		t.Fatalf("repeat %s", out)
	}
	h.config(`{"bulk_set_state_enabled":false}`)
	st, out, _ = h.do("POST", "/api/flow_runs/bulk_set_state", body)
	expect(t, st, out, 405)
}
