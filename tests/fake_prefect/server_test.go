package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const demoCreate = "/api/deployments/" + demoDeploymentID + "/create_flow_run"

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     *testing.T
	srv   *Server
	http  *httptest.Server
	clock *fakeClock
	hdr   map[string]string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := NewServer()
	s.nowFn = clk.now
	s.Reset()
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &harness{t: t, srv: s, http: hs, clock: clk, hdr: map[string]string{}}
}

// do sends a request; body may be a string or any JSON-encodable value.
func (h *harness) do(method, path string, body any) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h.hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

func (h *harness) config(cfg string) {
	h.t.Helper()
	if st, out, _ := h.do("POST", "/_fake/config", cfg); st != 200 {
		h.t.Fatalf("config %s: %d %s", cfg, st, out)
	}
}

func (h *harness) stats() statsJSON {
	h.t.Helper()
	_, out, _ := h.do("GET", "/_fake/stats", nil)
	var s statsJSON
	if err := json.Unmarshal(out, &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

type run struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	FlowID         string            `json:"flow_id"`
	Tags           []string          `json:"tags"`
	IdempotencyKey *string           `json:"idempotency_key"`
	StateType      string            `json:"state_type"`
	StateName      string            `json:"state_name"`
	StartTime      *string           `json:"start_time"`
	EndTime        *string           `json:"end_time"`
	Parameters     map[string]any    `json:"parameters"`
	State          map[string]any    `json:"state"`
	Labels         map[string]string `json:"labels"`
}

func expect(t *testing.T, gotStatus int, body []byte, want int) {
	t.Helper()
	if gotStatus != want {
		t.Fatalf("status %d, want %d; body %s", gotStatus, want, body)
	}
}

func TestHealthReadyVersion(t *testing.T) {
	h := newHarness(t)
	for path, want := range map[string]string{"/api/health": "true", "/api/ready": `{"message":"OK"}`, "/api/admin/version": `"3.8.3"`} {
		st, out, hdr := h.do("GET", path, nil)
		if st != 200 || string(out) != want || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s %v", path, st, out, hdr)
		}
	}
	h.config(`{"down": true}`)
	st, out, _ := h.do("GET", "/api/health", nil)
	expect(t, st, out, 503)
}

func TestIdempotencyPerFlow(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("POST", demoCreate, `{"idempotency_key":"k1","tags":["a"],"parameters":{"x":1}}`)
	expect(t, st, out, 201)
	first := decode[run](t, out)
	if first.StateType != "SCHEDULED" || first.StateName != "Scheduled" || first.Tags[0] != "a" || first.Name == "" {
		t.Fatalf("unexpected run %s", out)
	}
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"k1","tags":["b"],"parameters":{"x":2}}`)
	expect(t, st, out, 200)
	again := decode[run](t, out)
	if again.ID != first.ID || again.Tags[0] != "a" || again.Parameters["x"] != 1.0 {
		t.Fatalf("repeat did not return the original run: %s", out)
	}
	// Same flow, other deployment: same key still matches (unique per flow).
	st, out, _ = h.do("POST", "/_fake/deployments", `{"flow_name":"demo-flow","name":"other","tags":["dep"]}`)
	expect(t, st, out, 201)
	other := decode[map[string]any](t, out)
	if other["flow_id"] != demoFlowID {
		t.Fatalf("deployment of the same flow got flow_id %v", other["flow_id"])
	}
	st, out, _ = h.do("POST", "/api/deployments/"+other["id"].(string)+"/create_flow_run", `{"idempotency_key":"k1"}`)
	expect(t, st, out, 200)
	// Another flow: a new run, with the deployment's tags merged in.
	_, out, _ = h.do("POST", "/_fake/deployments", `{"flow_name":"f2","name":"d2","tags":["dep"]}`)
	d2 := decode[map[string]any](t, out)
	st, out, _ = h.do("POST", "/api/deployments/"+d2["id"].(string)+"/create_flow_run", `{"idempotency_key":"k1","tags":["x","dep"]}`)
	expect(t, st, out, 201)
	if r := decode[run](t, out); strings.Join(r.Tags, ",") != "dep,x" {
		t.Fatalf("tags %v", r.Tags)
	}
	// Without a key every create is new.
	for range 2 {
		st, out, _ = h.do("POST", demoCreate, `{}`)
		expect(t, st, out, 201)
	}
	s := h.stats()
	if s.Runs != 4 || s.Created != 4 || s.Existing != 2 || s.RunsWithoutKey != 2 || s.Requests["create_flow_run"] != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCreateValidation(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("POST", demoCreate, `{"name":"x","bogus":1}`)
	expect(t, st, out, 422)
	want := `{"exception_detail":[{"loc":["body","bogus"],"msg":"Extra inputs are not permitted","type":"extra_forbidden"}],"exception_message":"Invalid request received.","request_body":null}`
	if string(out) != want {
		t.Fatalf("got %s want %s", out, want)
	}
	st, out, _ = h.do("POST", demoCreate, `{"name":`)
	expect(t, st, out, 422)
	st, out, _ = h.do("POST", demoCreate, `[1]`)
	expect(t, st, out, 422)
	st, out, _ = h.do("POST", demoCreate, `{"tags":"notalist"}`)
	expect(t, st, out, 422)
	st, out, _ = h.do("POST", "/api/deployments/00000000-0000-4000-8000-00000000dead/create_flow_run", `{}`)
	expect(t, st, out, 404)
	if string(out) != `{"detail":"Deployment not found"}` {
		t.Fatalf("404 body %s", out)
	}
	big := fmt.Sprintf(`{"parameters":{"blob":"%s"}}`, strings.Repeat("x", 513*1024))
	st, out, _ = h.do("POST", demoCreate, big)
	expect(t, st, out, 422)

	// Parameter schema enforcement: 409 with Prefect's message.
	_, out, _ = h.do("POST", "/_fake/deployments", `{"flow_name":"typed","name":"d","required":["n"],
		"properties":{"n":{"type":"integer"}},"enforce_parameter_schema":true}`)
	dep := decode[map[string]any](t, out)
	path := "/api/deployments/" + dep["id"].(string) + "/create_flow_run"
	st, out, _ = h.do("POST", path, `{"parameters":{}}`)
	expect(t, st, out, 409)
	if want := `{"detail":"Error creating flow run: Validation failed for field 'n'. Failure reason: 'n' is a required property"}`; string(out) != want {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("POST", path, `{"parameters":{"n":"seven"}}`)
	expect(t, st, out, 409)
	if !strings.Contains(string(out), `'seven' is not of type 'integer'`) {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("POST", path, `{"parameters":{"n":7}}`)
	expect(t, st, out, 201)
	// The body may switch enforcement off.
	st, out, _ = h.do("POST", path, `{"parameters":{},"enforce_parameter_schema":false}`)
	expect(t, st, out, 201)
}

func TestDeploymentLookup(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("GET", "/api/deployments/name/demo-flow/demo", nil)
	expect(t, st, out, 200)
	d := decode[map[string]any](t, out)
	if d["id"] != demoDeploymentID || d["flow_id"] != demoFlowID || d["work_queue_name"] != "default" {
		t.Fatalf("%s", out)
	}
	st, out, _ = h.do("GET", "/api/deployments/"+demoDeploymentID, nil)
	expect(t, st, out, 200)
	h.do("POST", "/_fake/deployments", `{"flow_name":"my flow","name":"a/b","id":"00000000-0000-4000-8000-0000000000aa"}`)
	st, out, _ = h.do("GET", "/api/deployments/name/my%20flow/a%2Fb", nil)
	expect(t, st, out, 200)
	st, out, _ = h.do("GET", "/api/deployments/name/demo-flow/nope", nil)
	expect(t, st, out, 404)
	// Cloud-style API root.
	st, out, _ = h.do("GET", "/api/accounts/a1/workspaces/w1/deployments/name/demo-flow/demo", nil)
	expect(t, st, out, 200)
}

func TestFilter(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 3 {
		_, out, _ := h.do("POST", demoCreate, fmt.Sprintf(`{"idempotency_key":"key-%d"}`, i))
		ids = append(ids, decode[run](t, out).ID)
	}
	st, out, _ := h.do("POST", "/api/flow_runs/filter", `{"limit":201}`)
	expect(t, st, out, 422)
	if want := `{"exception_detail":[{"loc":["body","limit"],"msg":"Input should be less than or equal to 200","type":"less_than_equal"}],"exception_message":"Invalid request received.","request_body":null}`; string(out) != want {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"flow_runs":{"nope":{}}}`)
	expect(t, st, out, 422)
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"bogus":1}`)
	expect(t, st, out, 422)
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"sort":"SIDEWAYS"}`)
	expect(t, st, out, 422)

	body := map[string]any{"flow_runs": map[string]any{"id": map[string]any{"any_": ids[:2]}}, "limit": 200, "offset": 0, "sort": "ID_DESC"}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", body)
	expect(t, st, out, 200)
	if runs := decode[[]run](t, out); len(runs) != 2 || runs[0].ID < runs[1].ID {
		t.Fatalf("id filter: %s", out)
	}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"flow_runs":{"idempotency_key":{"any_":["key-2"]}}}`)
	expect(t, st, out, 200)
	if runs := decode[[]run](t, out); len(runs) != 1 || runs[0].ID != ids[2] {
		t.Fatalf("key filter: %s", out)
	}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"flow_runs":{"state":{"type":{"any_":["COMPLETED"]}}}}`)
	expect(t, st, out, 200)
	if string(out) != "[]" {
		t.Fatalf("state filter: %s", out)
	}
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{"limit":2,"offset":2}`)
	expect(t, st, out, 200)
	if runs := decode[[]run](t, out); len(runs) != 1 {
		t.Fatalf("paging: %s", out)
	}
	st, out, _ = h.do("GET", "/api/flow_runs/"+ids[0], nil)
	expect(t, st, out, 200)
	st, out, _ = h.do("GET", "/api/flow_runs/00000000-0000-4000-8000-00000000dead", nil)
	expect(t, st, out, 404)
}

func TestBulk(t *testing.T) {
	h := newHarness(t)
	bulk := "/api/deployments/" + demoDeploymentID + "/create_flow_run/bulk"
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{}
	}
	st, out, _ := h.do("POST", bulk, many)
	expect(t, st, out, 400)
	if string(out) != `{"detail":"Cannot create more than 100 flow runs in a single request"}` {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("POST", bulk, `[{}, {"extra": true}]`)
	expect(t, st, out, 422)
	if !strings.Contains(string(out), `"loc":["body",1,"extra"]`) {
		t.Fatalf("got %s", out)
	}

	_, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"pre"}`)
	pre := decode[run](t, out)
	st, out, _ = h.do("POST", bulk, `[{"idempotency_key":"pre"},{"idempotency_key":"new"},{"idempotency_key":"new"},{"parameters":{"__fake_final":"FAILED"}}]`)
	expect(t, st, out, 200)
	res := decode[struct {
		Results []struct {
			FlowRunID *string `json:"flow_run_id"`
			Status    string  `json:"status"`
			Error     *string `json:"error"`
		} `json:"results"`
	}](t, out)
	r := res.Results
	if len(r) != 4 || *r[0].FlowRunID != pre.ID || r[0].Status != "CREATED" || r[1].Status != "CREATED" ||
		*r[2].FlowRunID != *r[1].FlowRunID || r[3].Error != nil {
		t.Fatalf("bulk results %s", out)
	}
	s := h.stats()
	if s.Runs != 3 || s.Created != 3 || s.Existing != 2 {
		t.Fatalf("stats %+v", s)
	}

	// Schema failures are per element.
	_, out, _ = h.do("POST", "/_fake/deployments", `{"flow_name":"typed","name":"d","required":["n"],"enforce_parameter_schema":true}`)
	dep := decode[map[string]any](t, out)
	st, out, _ = h.do("POST", "/api/deployments/"+dep["id"].(string)+"/create_flow_run/bulk", `[{"parameters":{"n":1}},{"parameters":{}}]`)
	expect(t, st, out, 200)
	if !strings.Contains(string(out), `"status":"FAILED","error":"Parameter validation failed: Validation failed for field 'n'`) ||
		!strings.Contains(string(out), `"status":"CREATED","error":null`) {
		t.Fatalf("got %s", out)
	}

	h.config(`{"bulk_enabled": false}`)
	st, out, _ = h.do("POST", bulk, `[{}]`)
	expect(t, st, out, 404)
	if string(out) != `{"detail":"Not Found"}` {
		t.Fatalf("got %s", out)
	}
}

func TestCSRFAndAuth(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("GET", "/api/csrf-token?client=c1", nil)
	expect(t, st, out, 422)
	if string(out) != `{"detail":"CSRF protection is disabled."}` {
		t.Fatalf("got %s", out)
	}
	h.config(`{"csrf_enabled": true, "auth": "Bearer secret"}`)

	st, out, _ = h.do("GET", "/api/deployments/"+demoDeploymentID, nil)
	expect(t, st, out, 401)
	st, out, _ = h.do("GET", "/api/health", nil) // no auth needed
	expect(t, st, out, 200)
	h.hdr["Authorization"] = "Bearer secret"

	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 403)
	if string(out) != `{"detail":"Invalid CSRF token or client identifier."}` {
		t.Fatalf("got %s", out)
	}
	st, out, _ = h.do("GET", "/api/csrf-token?client=c1", nil)
	expect(t, st, out, 200)
	tok := decode[map[string]string](t, out)
	if tok["client"] != "c1" || len(tok["token"]) < 32 {
		t.Fatalf("token %s", out)
	}
	if exp, err := time.Parse(time.RFC3339, tok["expiration"]); err != nil || !exp.Equal(h.clock.now().Add(time.Hour)) {
		t.Fatalf("expiration %q %v", tok["expiration"], err)
	}
	h.hdr["Prefect-Csrf-Token"] = tok["token"]
	h.hdr["Prefect-Csrf-Client"] = "c1"
	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 201)
	h.hdr["Prefect-Csrf-Client"] = "c2"
	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 403)
	h.hdr["Prefect-Csrf-Client"] = "c1"
	h.clock.advance(61 * time.Minute) // expired
	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 403)
}

func TestScheduleProgression(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"scheduled_ms":1000,"pending_ms":1000,"running_ms":1000,"fail_rate":0,"crash_rate":0}}`)
	_, out, _ := h.do("POST", demoCreate, `{}`)
	id := decode[run](t, out).ID
	_, out, _ = h.do("POST", demoCreate, `{"parameters":{"__fake_final":"CRASHED","__fake_running_ms":5000}}`)
	crashID := decode[run](t, out).ID

	read := func(id string) run {
		st, out, _ := h.do("GET", "/api/flow_runs/"+id, nil)
		expect(t, st, out, 200)
		return decode[run](t, out)
	}
	steps := []struct {
		advance     time.Duration
		want, crash string
	}{
		{0, "SCHEDULED", "SCHEDULED"},
		{1500 * time.Millisecond, "PENDING", "PENDING"},
		{time.Second, "RUNNING", "RUNNING"},
		{time.Second, "COMPLETED", "RUNNING"},
		{5 * time.Second, "COMPLETED", "CRASHED"},
	}
	for i, s := range steps {
		h.clock.advance(s.advance)
		r, c := read(id), read(crashID)
		if r.StateType != s.want || c.StateType != s.crash {
			t.Fatalf("step %d: got %s/%s want %s/%s", i, r.StateType, c.StateType, s.want, s.crash)
		}
		if (r.StateType == "RUNNING" || r.StateType == "COMPLETED") != (r.StartTime != nil) {
			t.Fatalf("step %d: start_time %v in %s", i, r.StartTime, r.StateType)
		}
		if (r.StateType == "COMPLETED") != (r.EndTime != nil) {
			t.Fatalf("step %d: end_time %v in %s", i, r.EndTime, r.StateType)
		}
	}
	if r := read(id); r.StateName != "Completed" || r.State["timestamp"] != "2026-01-02T03:04:08.000000Z" {
		t.Fatalf("final state %+v", r.State)
	}

	// The filter sees the same lazily computed states.
	st, out, _ := h.do("POST", "/api/flow_runs/filter", `{"flow_runs":{"state":{"type":{"any_":["CRASHED"]}}}}`)
	expect(t, st, out, 200)
	if runs := decode[[]run](t, out); len(runs) != 1 || runs[0].ID != crashID {
		t.Fatalf("filter %s", out)
	}

	// Late naming.
	h.config(`{"run_schedule":{"scheduled_ms":1000,"late":true}}`)
	_, out, _ = h.do("POST", demoCreate, `{}`)
	if r := decode[run](t, out); r.StateType != "SCHEDULED" || r.StateName != "Late" {
		t.Fatalf("late run %s", out)
	}
}

func TestTaskRunsMirrorChild(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"scheduled_ms":0,"pending_ms":0,"running_ms":1000}}`)
	_, out, _ := h.do("POST", demoCreate, `{}`)
	parent := decode[run](t, out).ID
	body := fmt.Sprintf(`{"flow_run_id":%q,"task_key":"prefect.deployments.flow_runs.run_deployment.demo-flow-demo","dynamic_key":"0",
		"name":"demo-flow/demo","state":{"type":"PENDING","name":"Pending"},"task_inputs":{},"empirical_policy":{"retries":0,"retry_delay":0}}`, parent)
	st, out, _ := h.do("POST", "/api/task_runs/", body)
	expect(t, st, out, 201)
	task := decode[map[string]any](t, out)
	if task["state_type"] != "PENDING" {
		t.Fatalf("task %s", out)
	}
	st, out, _ = h.do("POST", "/api/task_runs/", body)
	expect(t, st, out, 200)
	if decode[map[string]any](t, out)["id"] != task["id"] {
		t.Fatalf("not idempotent: %s", out)
	}
	_, out, _ = h.do("POST", demoCreate, fmt.Sprintf(`{"parent_task_run_id":%q}`, task["id"]))
	child := decode[run](t, out)
	if child.StateType != "RUNNING" {
		t.Fatalf("child %s", out)
	}
	st, out, _ = h.do("GET", "/api/task_runs/"+task["id"].(string), nil)
	expect(t, st, out, 200)
	if decode[map[string]any](t, out)["state_type"] != "RUNNING" {
		t.Fatalf("mirror %s", out)
	}
	h.clock.advance(2 * time.Second)
	st, out, _ = h.do("POST", "/api/task_runs/filter", fmt.Sprintf(`{"task_runs":{"flow_run_id":{"any_":[%q]}},"limit":200}`, parent))
	expect(t, st, out, 200)
	trs := decode[[]map[string]any](t, out)
	if len(trs) != 1 || trs[0]["state_type"] != "COMPLETED" || trs[0]["state_name"] != "Completed" {
		t.Fatalf("filter %s", out)
	}
	st, out, _ = h.do("POST", "/api/task_runs/filter", `{"limit":201}`)
	expect(t, st, out, 422)
	if s := h.stats(); s.TaskRuns != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSetState(t *testing.T) {
	h := newHarness(t)
	cancel := func(id, tid string) (int, map[string]any) {
		st, out, _ := h.do("POST", "/api/flow_runs/"+id+"/set_state", fmt.Sprintf(
			`{"state":{"type":"CANCELLING","name":"Cancelling","message":"floodgate","state_details":{"transition_id":%q}},"force":false}`, tid))
		return st, decode[map[string]any](t, out)
	}
	state := func(id string) string {
		_, out, _ := h.do("GET", "/api/flow_runs/"+id, nil)
		return decode[run](t, out).StateType
	}
	// A SCHEDULED run has no infrastructure: straight to CANCELLED.
	_, out, _ := h.do("POST", demoCreate, `{}`)
	sched := decode[run](t, out).ID
	st, res := cancel(sched, "11111111-1111-4111-8111-111111111111")
	if st != 200 || res["status"] != "REJECT" || res["state"].(map[string]any)["type"] != "CANCELLED" || state(sched) != "CANCELLED" {
		t.Fatalf("scheduled cancel: %d %v", st, res)
	}
	// A final run: ABORT.
	st, res = cancel(sched, "22222222-2222-4222-8222-222222222222")
	if st != 200 || res["status"] != "ABORT" || res["details"].(map[string]any)["reason"] == "" {
		t.Fatalf("final cancel: %d %v", st, res)
	}
	// A RUNNING run: ACCEPT, CANCELLING for cancel_delay_ms, then CANCELLED.
	h.config(`{"cancel_delay_ms": 500, "run_schedule":{"running_ms":60000}}`)
	_, out, _ = h.do("POST", demoCreate, `{}`)
	running := decode[run](t, out).ID
	if state(running) != "RUNNING" {
		t.Fatal("run not running")
	}
	tid := "33333333-3333-4333-8333-333333333333"
	st, res = cancel(running, tid)
	if st != 201 || res["status"] != "ACCEPT" || res["state"].(map[string]any)["type"] != "CANCELLING" {
		t.Fatalf("running cancel: %d %v", st, res)
	}
	if state(running) != "CANCELLING" {
		t.Fatal("not cancelling")
	}
	st, res = cancel(running, tid) // a retried request is harmless
	if st != 200 || res["status"] != "REJECT" || state(running) != "CANCELLING" {
		t.Fatalf("duplicate: %d %v", st, res)
	}
	h.clock.advance(500 * time.Millisecond)
	if state(running) != "CANCELLED" {
		t.Fatal("not cancelled after the delay")
	}
	h.clock.advance(time.Hour) // a cancelled run stays cancelled
	if state(running) != "CANCELLED" {
		t.Fatal("cancelled run moved on")
	}
	if s := h.stats(); s.SetState != 4 {
		t.Fatalf("set_state count %d", s.SetState)
	}
}

func TestLostResponse(t *testing.T) {
	h := newHarness(t)
	h.config(`{"lost_response_rate": 1, "fault_paths": ["create_flow_run"]}`)
	req, _ := http.NewRequest("POST", h.http.URL+demoCreate, strings.NewReader(`{"idempotency_key":"amb"}`))
	if resp, err := h.http.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("expected a dropped connection, got %d", resp.StatusCode)
	}
	// Other paths are untouched by the fault.
	st, out, _ := h.do("POST", "/api/flow_runs/filter", `{}`)
	expect(t, st, out, 200)
	s := h.stats()
	if s.Runs != 1 || s.Created != 1 || s.Faults.LostResponse != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The retry with the same key finds the run the lost request created.
	h.config(`{"lost_response_rate": 0}`)
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"amb"}`)
	expect(t, st, out, 200)
}

func TestErrorFaults(t *testing.T) {
	h := newHarness(t)
	h.config(`{"rate_429": 1, "retry_after_s": 7}`)
	st, out, hdr := h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 429)
	if hdr.Get("Retry-After") != "7" {
		t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
	}
	h.config(`{"retry_after_date": true}`)
	_, _, hdr = h.do("POST", demoCreate, `{}`)
	if _, err := http.ParseTime(hdr.Get("Retry-After")); err != nil {
		t.Fatalf("Retry-After %q: %v", hdr.Get("Retry-After"), err)
	}
	st, out, _ = h.do("GET", "/api/health", nil) // no faults on health
	expect(t, st, out, 200)
	h.config(`{"rate_429": 0, "error_rate": 1, "error_status": 502, "fault_paths": ["filter"]}`)
	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 201)
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{}`)
	expect(t, st, out, 502)
	h.config(`{"error_rate": 0, "drop_rate": 1}`)
	if resp, err := h.http.Client().Post(h.http.URL+"/api/flow_runs/filter", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatal("expected a dropped connection")
	}
	s := h.stats()
	if s.Faults.R429 != 2 || s.Faults.Error != 1 || s.Faults.Drop != 1 || s.Runs != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Bad config keys are refused.
	if st, _, _ := h.do("POST", "/_fake/config", `{"eror_rate": 1}`); st != 400 {
		t.Fatalf("typo accepted: %d", st)
	}
}

func TestCapacityOverflow(t *testing.T) {
	h := newHarness(t)
	h.config(`{"capacity": 1, "service_time_ms": 300, "queue_limit": 1}`)
	var wg sync.WaitGroup
	statuses := make(chan int, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 50 * time.Millisecond) // arrive in order
			resp, err := h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
			if err != nil {
				statuses <- -1
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	if count[201] != 2 || count[503] != 1 {
		t.Fatalf("statuses %v", count)
	}
	s := h.stats()
	if s.PeakServed != 1 || s.PeakQueue != 1 || s.Faults.Overflow != 1 || s.PeakInFlight < 2 {
		t.Fatalf("stats %+v", s)
	}
	_, out, _ := h.do("GET", "/_fake/timeline", nil)
	tl := decode[struct {
		Buckets []bucket `json:"buckets"`
	}](t, out)
	if len(tl.Buckets) == 0 || tl.Buckets[0].Created != 2 || tl.Buckets[0].Errors != 1 {
		t.Fatalf("timeline %s", out)
	}
}

func TestWriteLockAnswersConcurrentWrites503(t *testing.T) {
	h := newHarness(t)
	h.config(`{"write_lock_ms": 300}`)
	first := make(chan int, 1)
	go func() {
		resp, err := h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the first write holds the lock
	start := time.Now()
	st, out, _ := h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 503)
	if !strings.Contains(string(out), "Service Unavailable") || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("a locked write should fail at once with Prefect's 503: %s after %v", out, time.Since(start))
	}
	// Reads, filter reads included, do not take the lock.
	st, out, _ = h.do("POST", "/api/flow_runs/filter", `{}`)
	expect(t, st, out, 200)
	if st := <-first; st != 201 {
		t.Fatalf("the write holding the lock: %d", st)
	}
	st, out, _ = h.do("POST", demoCreate, `{}`) // the lock is free again
	expect(t, st, out, 201)
	if s := h.stats(); s.Faults.Locked != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLatencyAndStall(t *testing.T) {
	h := newHarness(t)
	h.config(`{"latency_ms": 80}`)
	start := time.Now()
	st, out, _ := h.do("GET", "/api/flow_runs/"+demoDeploymentID, nil)
	expect(t, st, out, 404)
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("latency not applied: %v", el)
	}
	// Overflow "stall": held for stall_ms, then the connection is dropped.
	h.config(`{"latency_ms": 0, "capacity": 1, "service_time_ms": 400, "queue_limit": 1, "overflow": "stall", "stall_ms": 100}`)
	go h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
	go func() {
		time.Sleep(30 * time.Millisecond)
		h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
	}()
	time.Sleep(80 * time.Millisecond)
	start = time.Now()
	if resp, err := h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatalf("expected a stalled then dropped connection, got %d", resp.StatusCode)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("dropped after %v, before stall_ms", el)
	}
	if s := h.stats(); s.Faults.Overflow != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResetAndControl(t *testing.T) {
	h := newHarness(t)
	h.config(`{"csrf_enabled": true}`)
	h.do("POST", "/_fake/deployments", `{"flow_name":"f","name":"d"}`)
	h.do("GET", "/api/health", nil)
	h.do("POST", "/_fake/reset", nil)
	_, out, _ := h.do("GET", "/_fake/config", nil)
	if cfg := decode[Config](t, out); cfg.CSRFEnabled || !cfg.BulkEnabled || cfg.ErrorStatus != 503 {
		t.Fatalf("config after reset %s", out)
	}
	st, out, _ := h.do("GET", "/api/deployments/name/f/d", nil)
	expect(t, st, out, 404)
	if s := h.stats(); s.TotalRequests != 1 || s.Runs != 0 {
		t.Fatalf("stats after reset %+v", s)
	}
	h.do("POST", demoCreate, `{}`)
	_, out, _ = h.do("GET", "/_fake/runs", nil)
	if runs := decode[map[string][]run](t, out)["runs"]; len(runs) != 1 {
		t.Fatalf("runs %s", out)
	}
}

// BenchmarkCreateFlowRun measures the handler path without the network.
func BenchmarkCreateFlowRun(b *testing.B) {
	s := NewServer()
	body := []byte(`{"parameters":{"x":1,"name":"item"},"tags":["bench"],"idempotency_key":null}`)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", demoCreate, bytes.NewReader(body))
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
}

// BenchmarkFilter200 measures a tracking read of 200 existing runs.
func BenchmarkFilter200(b *testing.B) {
	s := NewServer()
	ids := make([]string, 0, 200)
	for range 200 {
		r := httptest.NewRequest("POST", demoCreate, strings.NewReader(`{}`))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var v struct {
			ID string `json:"id"`
		}
		json.Unmarshal(w.Body.Bytes(), &v)
		ids = append(ids, v.ID)
	}
	body, _ := json.Marshal(map[string]any{"flow_runs": map[string]any{"id": map[string]any{"any_": ids}},
		"limit": 200, "offset": 0, "sort": "ID_DESC"})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/api/flow_runs/filter", bytes.NewReader(body))
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
}

func TestAppendTimeMatchesLayout(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
		time.Unix(0, 0),
	} {
		if got, want := string(appendTime(nil, tm)), `"`+ts(tm)+`"`; got != want {
			t.Errorf("appendTime %s, want %s", got, want)
		}
	}
}

func TestControlRunsStatesAndSetStateLog(t *testing.T) {
	h := newHarness(t)
	// A run made through the control API: not counted, in the given state.
	st, out, _ := h.do("POST", "/_fake/runs", `{"name":"parent","state":"RUNNING"}`)
	expect(t, st, out, 201)
	parent := decode[run](t, out)
	if parent.Name != "parent" || parent.StateType != "RUNNING" || parent.StartTime == nil {
		t.Fatalf("parent %s", out)
	}
	if s := h.stats(); s.TotalRequests != 0 || s.Created != 0 || s.Runs != 1 {
		t.Fatalf("control create was counted: %+v", s)
	}
	for _, bad := range []string{`{"state":"NOPE"}`, `{"extra":1}`, `{"deployment_id":"11111111-2222-4333-8444-555555555555"}`} {
		st, out, _ = h.do("POST", "/_fake/runs", bad)
		expect(t, st, out, 400)
	}
	// Its state changes at once, without rules (even out of a final state).
	st, out, _ = h.do("POST", "/_fake/runs/"+parent.ID+"/state", `{"type":"COMPLETED"}`)
	expect(t, st, out, 200)
	if r := decode[run](t, out); r.StateType != "COMPLETED" || r.StateName != "Completed" || r.EndTime == nil {
		t.Fatalf("completed %s", out)
	}
	st, out, _ = h.do("POST", "/_fake/runs/"+parent.ID+"/state", `{"type":"RUNNING","name":"Resumed"}`)
	expect(t, st, out, 200)
	_, out, _ = h.do("GET", "/api/flow_runs/"+parent.ID, nil)
	if r := decode[run](t, out); r.StateType != "RUNNING" || r.StateName != "Resumed" {
		t.Fatalf("read back %s", out)
	}
	st, out, _ = h.do("POST", "/_fake/runs/"+parent.ID+"/state", `{"type":"DONE"}`)
	expect(t, st, out, 400)
	st, out, _ = h.do("POST", "/_fake/runs/11111111-2222-4333-8444-555555555555/state", `{"type":"RUNNING"}`)
	expect(t, st, out, 404)
	if s := h.stats(); s.SetState != 0 {
		t.Fatalf("control state change counted as set_state: %+v", s)
	}
	// API set_state calls are logged with their outcome.
	h.config(`{"cancel_delay_ms": 60000}`)
	tid := "33333333-3333-4333-8333-333333333333"
	body := fmt.Sprintf(`{"state":{"type":"CANCELLING","state_details":{"transition_id":%q}}}`, tid)
	st, out, _ = h.do("POST", "/api/flow_runs/"+parent.ID+"/set_state", body)
	expect(t, st, out, 201)
	h.do("POST", "/api/flow_runs/"+parent.ID+"/set_state", body) // duplicate: REJECT
	h.do("POST", "/api/flow_runs/11111111-2222-4333-8444-555555555555/set_state", body)
	_, out, _ = h.do("GET", "/_fake/set_states", nil)
	log := decode[map[string][]setStateRecord](t, out)["set_states"]
	if len(log) != 3 || log[0].Status != "ACCEPT" || log[0].FromType != "RUNNING" ||
		log[0].TransitionID != tid || log[0].Type != "CANCELLING" || log[0].FlowRunID != parent.ID ||
		log[1].Status != "REJECT" || log[1].FromType != "CANCELLING" || log[2].Status != "NOT_FOUND" {
		t.Fatalf("set_state log %s", out)
	}
	// The largest id list of a flow_runs filter is reported.
	h.do("POST", "/api/flow_runs/filter", fmt.Sprintf(`{"flow_runs":{"id":{"any_":[%q,%q]}}}`, parent.ID, tid))
	h.do("POST", "/api/flow_runs/filter", fmt.Sprintf(`{"flow_runs":{"id":{"any_":[%q]}}}`, parent.ID))
	if s := h.stats(); s.FilterMaxIDs != 2 {
		t.Fatalf("filter_max_ids %d", s.FilterMaxIDs)
	}
	h.do("POST", "/_fake/reset", nil)
	_, out, _ = h.do("GET", "/_fake/set_states", nil)
	if log := decode[map[string][]setStateRecord](t, out)["set_states"]; len(log) != 0 {
		t.Fatalf("set_state log after reset %s", out)
	}
	if s := h.stats(); s.FilterMaxIDs != 0 {
		t.Fatalf("filter_max_ids after reset %d", s.FilterMaxIDs)
	}
}

func TestPeaksAreExactNotSampled(t *testing.T) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"scheduled_ms":0,"pending_ms":0,"running_ms":1000}}`)
	create := func(tag string) string {
		st, out, _ := h.do("POST", demoCreate, map[string]any{"tags": []string{tag}})
		expect(t, st, out, 201)
		return decode[run](t, out).ID
	}
	peaks := func() peaksJSON {
		_, out, _ := h.do("GET", "/_fake/peaks", nil)
		return decode[peaksJSON](t, out)
	}
	create("floodgate-batch:a")
	create("floodgate-batch:a")
	// One millisecond of overlap: a sampler would miss it, the sweep does not.
	h.clock.advance(999 * time.Millisecond)
	create("floodgate-batch:a")
	h.clock.advance(5 * time.Second)
	if p := peaks().ByTag["floodgate-batch:a"]; p != 3 {
		t.Fatalf("peak %d, want 3", p)
	}
	// A run that ends at the instant the next one starts does not overlap it.
	create("floodgate-batch:b")
	h.clock.advance(time.Second)
	create("floodgate-batch:b")
	// A final state set by hand ends a run's interval; a run never final counts until now.
	id := create("floodgate-batch:c")
	h.clock.advance(10 * time.Millisecond)
	st, out, _ := h.do("POST", "/_fake/runs/"+id+"/state", `{"type":"FAILED"}`)
	expect(t, st, out, 200)
	h.clock.advance(10 * time.Millisecond)
	create("floodgate-batch:c")
	h.config(`{"run_schedule":null}`)
	create("floodgate-batch:d")
	h.clock.advance(time.Hour)
	create("floodgate-batch:d")
	p := peaks()
	if p.ByTag["floodgate-batch:b"] != 1 || p.ByTag["floodgate-batch:c"] != 1 || p.ByTag["floodgate-batch:d"] != 2 {
		t.Fatalf("peaks %+v", p.ByTag)
	}
	// A second final state does not move the end: set COMPLETED twice, far apart.
	e := create("floodgate-batch:e")
	h.clock.advance(10 * time.Millisecond)
	h.do("POST", "/_fake/runs/"+e+"/state", `{"type":"COMPLETED"}`)
	h.clock.advance(time.Hour)
	create("floodgate-batch:e")
	h.do("POST", "/_fake/runs/"+e+"/state", `{"type":"COMPLETED"}`)
	p = peaks()
	if p.ByTag["floodgate-batch:e"] != 1 {
		t.Fatalf("peak after a second COMPLETED %+v", p.ByTag)
	}
	if p.ByFlow[demoFlowID] != 3 {
		t.Fatalf("flow peak %+v", p.ByFlow)
	}
}

func TestWriteLockWaitsLikeSQLiteBusyTimeout(t *testing.T) {
	h := newHarness(t)
	// The holder keeps the lock 300 ms; a second write waits for it (busy timeout 1 s) and
	// succeeds, a third with a busy timeout shorter than the wait answers 503 after it.
	h.config(`{"write_lock_ms": 300, "write_lock_wait_ms": 1000}`)
	first := make(chan int, 1)
	go func() {
		resp, err := h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	st, out, _ := h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 201)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("the second write should have waited for the lock, took %v", el)
	}
	if st := <-first; st != 201 {
		t.Fatalf("the write holding the lock: %d", st)
	}
	h.config(`{"write_lock_ms": 400, "write_lock_wait_ms": 100}`)
	go h.http.Client().Post(h.http.URL+demoCreate, "application/json", strings.NewReader("{}"))
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	st, out, _ = h.do("POST", demoCreate, `{}`)
	expect(t, st, out, 503)
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("the 503 should come after the busy timeout, came after %v", el)
	}
	if s := h.stats(); s.Faults.Locked != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBulkItemContentionErrors(t *testing.T) {
	h := newHarness(t)
	bulk := "/api/deployments/" + demoDeploymentID + "/create_flow_run/bulk"
	h.config(`{"bulk_item_error_rate": 1}`)
	st, out, _ := h.do("POST", bulk, `[{"idempotency_key":"a"},{"idempotency_key":"b"}]`)
	expect(t, st, out, 200)
	res := decode[struct {
		Results []bulkResult `json:"results"`
	}](t, out)
	if len(res.Results) != 2 {
		t.Fatalf("results %s", out)
	}
	for _, r := range res.Results {
		if r.Status != "FAILED" || r.FlowRunID != nil || r.Error == nil ||
			!strings.HasPrefix(*r.Error, "(sqlite3.OperationalError) database is locked\n[SQL: INSERT INTO flow_run") {
			t.Fatalf("result %s", out)
		}
	}
	if s := h.stats(); s.Created != 0 || s.Runs != 0 || s.Faults.BulkItem != 2 {
		t.Fatalf("nothing may be created for a contended run: %+v", s)
	}
	// A run that already exists is found before the insert that would contend.
	h.config(`{"bulk_item_error_rate": 0}`)
	st, out, _ = h.do("POST", bulk, `[{"idempotency_key":"a"}]`)
	expect(t, st, out, 200)
	h.config(`{"bulk_item_error_rate": 1, "bulk_item_error": "(sqlalchemy.dialects.postgresql.asyncpg.Error) deadlock detected"}`)
	st, out, _ = h.do("POST", bulk, `[{"idempotency_key":"a"},{"idempotency_key":"c"}]`)
	expect(t, st, out, 200)
	res = decode[struct {
		Results []bulkResult `json:"results"`
	}](t, out)
	if res.Results[0].Status != "CREATED" || res.Results[1].Status != "FAILED" ||
		*res.Results[1].Error != "(sqlalchemy.dialects.postgresql.asyncpg.Error) deadlock detected" {
		t.Fatalf("results %s", out)
	}
	if st, _, _ := h.do("POST", "/_fake/config", `{"bulk_item_error_rate": 2}`); st != 400 {
		t.Fatalf("a rate above 1 was accepted: %d", st)
	}
}

func TestContentionRateFailsSingleCreatesWith503(t *testing.T) {
	h := newHarness(t)
	h.config(`{"bulk_item_error_rate": 1}`)
	st, out, _ := h.do("POST", demoCreate, `{"idempotency_key":"s"}`)
	expect(t, st, out, 503)
	if !strings.Contains(string(out), "Service Unavailable") {
		t.Fatalf("body %s", out)
	}
	if s := h.stats(); s.Runs != 0 || s.Faults.Locked != 1 {
		t.Fatalf("stats %+v", s)
	}
	h.config(`{"bulk_item_error_rate": 0}`)
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"s"}`)
	expect(t, st, out, 201)
}
