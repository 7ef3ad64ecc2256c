package main

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"
)

// One test per rule where the fake must behave as Prefect's server does (the
// rule's source is cited at the code that implements it).

func (h *harness) filterIDs(path, body string) (int, []string, []byte) {
	h.t.Helper()
	st, out, _ := h.do("POST", path, body)
	if st != 200 {
		return st, nil, out
	}
	var rows []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		h.t.Fatalf("decode %s: %v", out, err)
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	sort.Strings(ids)
	return st, ids, out
}

func sorted(ids ...string) []string {
	out := append([]string{}, ids...)
	sort.Strings(out)
	return out
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: got %v want %v", what, got, want)
	}
}

// fixture: three runs of the demo deployment and one of another flow.
func ruleFixture(t *testing.T) (*harness, map[string]string) {
	h := newHarness(t)
	h.config(`{"run_schedule":{"scheduled_ms":0,"pending_ms":1000,"running_ms":1000}}`)
	ids := map[string]string{}
	mk := func(label, path, body string) {
		st, out, _ := h.do("POST", path, body)
		expect(t, st, out, 201)
		ids[label] = decode[run](t, out).ID
	}
	mk("alpha", demoCreate, `{"name":"Sad-Marvin-1","tags":["a","b"]}`)
	h.clock.advance(3 * time.Second) // alpha: started at +1 s, ended at +2 s
	mk("beta", demoCreate, `{"name":"marvin-robot","tags":["b"]}`)
	h.clock.advance(1500 * time.Millisecond) // beta running since +4 s
	mk("gamma", demoCreate, `{"name":"zaphod","tags":[]}`)
	_, out, _ := h.do("POST", "/_fake/deployments", `{"flow_name":"other-flow","name":"other","id":"00000000-0000-4000-8000-0000000000bb"}`)
	dep := decode[map[string]any](t, out)
	mk("other", "/api/deployments/"+dep["id"].(string)+"/create_flow_run", `{"name":"other-run"}`)
	return h, ids
}

const frFilter = "/api/flow_runs/filter"

func TestRuleFilterUnknownFieldsRejectedAtEveryLevel(t *testing.T) {
	h, _ := ruleFixture(t)
	for _, body := range []string{
		`{"flow_runs":{"nope":{}}}`,
		`{"flow_runs":{"name":{"bogus_":"x"}}}`,
		`{"flow_runs":{"state":{"type":{"any_":["RUNNING"],"extra":1}}}}`,
		`{"flow_runs":{"id":{"operator":"or_"}}}`, // FlowRunFilterId is not an operator model
		`{"flows":{"bogus":1}}`,
		`{"deployments":{"name":{"nope":1}}}`,
		`{"work_pools":{"x":1}}`,
		`{"work_pool_queues":{"name":{"all_":["x"]}}}`,
		`{"task_runs":{"nope":1}}`,
	} {
		st, out, _ := h.do("POST", frFilter, body)
		expect(t, st, out, 422)
		if !strings.Contains(string(out), `"extra_forbidden"`) {
			t.Fatalf("%s: %s", body, out)
		}
	}
	// Every field Prefect 3.9.1 declares is accepted.
	st, out, _ := h.do("POST", frFilter, `{"flow_runs":{"operator":"and_","end_time":{"is_null_":false},
		"created_by":{"is_null_":true},"flow_version":null,"next_scheduled_start_time":{"before_":"2030-01-01T00:00:00Z"},
		"expected_start_time":{"after_":"2020-01-01T00:00:00Z"},"work_queue_name":{"is_null_":false}}}`)
	expect(t, st, out, 200)
}

func TestRuleFilterNameLike(t *testing.T) {
	h, ids := ruleFixture(t)
	// filters.py FlowRunFilterName.like_: ILIKE '%marvin%'.
	_, got, _ := h.filterIDs(frFilter, `{"flow_runs":{"name":{"like_":"marvin"}}}`)
	sameIDs(t, "like_", got, sorted(ids["alpha"], ids["beta"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"name":{"like_":"MARVIN-r"}}}`)
	sameIDs(t, "like_ case", got, sorted(ids["beta"]))
}

func TestRuleFilterTagsAnyAllNull(t *testing.T) {
	h, ids := ruleFixture(t)
	_, got, _ := h.filterIDs(frFilter, `{"flow_runs":{"tags":{"any_":["a","zzz"]}}}`)
	sameIDs(t, "any_", got, sorted(ids["alpha"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"tags":{"all_":["b"]}}}`)
	sameIDs(t, "all_", got, sorted(ids["alpha"], ids["beta"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"tags":{"is_null_":true}}}`)
	sameIDs(t, "is_null_", got, sorted(ids["gamma"], ids["other"]))
	// The member's operator: all_ OR is_null_.
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"tags":{"operator":"or_","all_":["a"],"is_null_":true}}}`)
	sameIDs(t, "or_", got, sorted(ids["alpha"], ids["gamma"], ids["other"]))
}

func TestRuleFilterStartAndEndTime(t *testing.T) {
	h, ids := ruleFixture(t)
	t0 := "2026-01-02T03:04:05Z" // the harness clock's start
	_, got, _ := h.filterIDs(frFilter, `{"flow_runs":{"end_time":{"is_null_":false}}}`)
	sameIDs(t, "ended", got, sorted(ids["alpha"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"start_time":{"is_null_":false}}}`)
	sameIDs(t, "started", got, sorted(ids["alpha"], ids["beta"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"start_time":{"after_":"2026-01-02T03:04:07Z"}}}`)
	sameIDs(t, "started after +2 s", got, sorted(ids["beta"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"end_time":{"before_":"`+t0+`"}}}`)
	sameIDs(t, "ended before start", got, nil)
	st, out, _ := h.do("POST", frFilter, `{"flow_runs":{"start_time":{"after_":"yesterday"}}}`)
	expect(t, st, out, 422)
}

func TestRuleFilterCreatedBy(t *testing.T) {
	h, ids := ruleFixture(t)
	// The fake's runs have no creator: created_by is NULL.
	_, got, _ := h.filterIDs(frFilter, `{"flow_runs":{"created_by":{"is_null_":true}}}`)
	sameIDs(t, "created_by null", got, sorted(ids["alpha"], ids["beta"], ids["gamma"], ids["other"]))
	_, got, _ = h.filterIDs(frFilter, `{"flow_runs":{"created_by":{"type_":["DEPLOYMENT"]}}}`)
	sameIDs(t, "created_by type", got, nil)
}

func TestRuleTopLevelFlowsDeploymentsWorkPools(t *testing.T) {
	h, ids := ruleFixture(t)
	demo := sorted(ids["alpha"], ids["beta"], ids["gamma"])
	_, got, _ := h.filterIDs(frFilter, `{"flows":{"name":{"any_":["demo-flow"]}}}`)
	sameIDs(t, "flows.name", got, demo)
	_, got, _ = h.filterIDs(frFilter, `{"flows":{"id":{"not_any_":["`+demoFlowID+`"]}}}`)
	sameIDs(t, "flows.id.not_any_", got, sorted(ids["other"]))
	_, got, _ = h.filterIDs(frFilter, `{"deployments":{"name":{"like_":"OTH"}}}`)
	sameIDs(t, "deployments.name.like_", got, sorted(ids["other"]))
	_, got, _ = h.filterIDs(frFilter, `{"deployments":{"id":{"any_":["`+demoDeploymentID+`"]}}}`)
	sameIDs(t, "deployments.id", got, demo)
	_, got, _ = h.filterIDs(frFilter, `{"work_pools":{"name":{"any_":["default"]}}}`)
	sameIDs(t, "work_pools default", got, sorted(ids["alpha"], ids["beta"], ids["gamma"], ids["other"]))
	_, got, _ = h.filterIDs(frFilter, `{"work_pools":{"name":{"any_":["elsewhere"]}}}`)
	sameIDs(t, "work_pools elsewhere", got, nil)
	_, got, _ = h.filterIDs(frFilter, `{"work_pool_queues":{"name":{"startswith_":["def"]}},"flows":{"name":{"like_":"other"}}}`)
	sameIDs(t, "queues + flows", got, sorted(ids["other"]))
}

func TestRuleFilterUUIDsAndStateTypesValidated(t *testing.T) {
	h, _ := ruleFixture(t)
	for body, typ := range map[string]string{
		`{"flow_runs":{"id":{"any_":["not-a-uuid"]}}}`:                     "uuid_parsing",
		`{"flow_runs":{"parent_task_run_id":{"any_":["x"]}}}`:              "uuid_parsing",
		`{"flow_runs":{"deployment_id":{"any_":["123"]}}}`:                 "uuid_parsing",
		`{"deployments":{"id":{"any_":["nope"]}}}`:                         "uuid_parsing",
		`{"task_runs":{"flow_run_id":{"any_":["nope"]}}}`:                  "uuid_parsing",
		`{"flow_runs":{"state":{"type":{"any_":["RUNNING","SLEEPING"]}}}}`: "enum",
		`{"flow_runs":{"state":{"type":{"not_any_":["running"]}}}}`:        "enum",
		`{"flow_runs":{"tags":{"operator":"xor_"}}}`:                       "enum",
	} {
		st, out, _ := h.do("POST", frFilter, body)
		expect(t, st, out, 422)
		if !strings.Contains(string(out), `"type":"`+typ+`"`) {
			t.Fatalf("%s: want %s, got %s", body, typ, out)
		}
	}
	st, out, _ := h.do("POST", "/api/task_runs/filter", `{"task_runs":{"id":{"any_":["nope"]}}}`)
	expect(t, st, out, 422)
}

func TestRuleTaskRunCreateRejectsExtraKeysAndNulls(t *testing.T) {
	h := newHarness(t)
	ok := `{"task_key":"k","dynamic_key":"0","flow_run_id":"` + demoDeploymentID + `"`
	st, out, _ := h.do("POST", "/api/task_runs/", ok+`}`)
	expect(t, st, out, 201)
	st, out, _ = h.do("POST", "/api/task_runs/", ok+`,"bogus":1}`)
	expect(t, st, out, 422)
	if !strings.Contains(string(out), `"loc":["body","bogus"]`) || !strings.Contains(string(out), "extra_forbidden") {
		t.Fatalf("%s", out)
	}
	st, out, _ = h.do("POST", "/api/task_runs/", ok+`,"tags":null}`)
	expect(t, st, out, 422)
	// Prefect's own run_deployment sends these.
	st, out, _ = h.do("POST", "/api/task_runs/", `{"task_key":"k2","dynamic_key":"0","name":"x","tags":[],
		"labels":{},"task_inputs":{},"empirical_policy":{},"cache_key":null,"task_version":null,"state":null}`)
	expect(t, st, out, 201)
}

func TestRuleCreateNullTagsParametersContext(t *testing.T) {
	h := newHarness(t)
	for field, typ := range map[string]string{"tags": "list_type", "parameters": "dict_type",
		"context": "dict_type", "empirical_policy": "model_type"} {
		st, out, _ := h.do("POST", demoCreate, `{"`+field+`":null}`)
		expect(t, st, out, 422)
		if !strings.Contains(string(out), `"loc":["body","`+field+`"]`) || !strings.Contains(string(out), typ) {
			t.Fatalf("%s: %s", field, out)
		}
	}
	// Optional fields may be null.
	st, out, _ := h.do("POST", demoCreate, `{"name":null,"idempotency_key":null,"labels":null,"job_variables":null,
		"state":null,"work_queue_name":null,"parent_task_run_id":null}`)
	expect(t, st, out, 201)
}

func TestRuleEmptyIdempotencyKeyIsNotDeduplicated(t *testing.T) {
	h := newHarness(t)
	st, out, _ := h.do("POST", demoCreate, `{"idempotency_key":""}`)
	expect(t, st, out, 201)
	first := decode[run](t, out).ID
	// Not answered with the existing run (200): inserted, and the unique index refuses it.
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":""}`)
	expect(t, st, out, 409)
	if !strings.Contains(string(out), "Data integrity conflict") {
		t.Fatalf("%s", out)
	}
	if n := len(h.srv.store.runs); n != 1 || h.srv.store.runs[0].id != first {
		t.Fatalf("%d runs", n)
	}
	// A real key still deduplicates.
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"k"}`)
	expect(t, st, out, 201)
	st, out, _ = h.do("POST", demoCreate, `{"idempotency_key":"k"}`)
	expect(t, st, out, 200)
}

func TestRuleNonUUIDPathIs404(t *testing.T) {
	h := newHarness(t)
	for _, p := range []struct{ method, path string }{
		{"GET", "/api/flow_runs/not-a-uuid"},
		{"GET", "/api/task_runs/123"},
		{"GET", "/api/deployments/xyz"},
		{"POST", "/api/deployments/xyz/create_flow_run"},
		{"POST", "/api/flow_runs/xyz/set_state"},
	} {
		st, out, _ := h.do(p.method, p.path, `{}`)
		expect(t, st, out, 404)
		if string(out) != `{"detail":"Not Found"}` {
			t.Fatalf("%s %s: %s", p.method, p.path, out)
		}
	}
}

func TestRuleValidationErrorShape(t *testing.T) {
	h := newHarness(t)
	// api/server.py validation_exception_handler: not FastAPI's {"detail": [...]}.
	st, out, _ := h.do("POST", frFilter, `{"bogus":1}`)
	expect(t, st, out, 422)
	var body map[string]json.RawMessage
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatal(err)
	}
	if string(body["exception_message"]) != `"Invalid request received."` || body["exception_detail"][0] != '[' {
		t.Fatalf("%s", out)
	}
	if _, has := body["detail"]; has {
		t.Fatalf("422 with a detail: %s", out)
	}
	// HTTPException answers keep a string detail.
	st, out, _ = h.do("GET", "/api/flow_runs/00000000-0000-4000-8000-00000000dead", nil)
	expect(t, st, out, 404)
	if string(out) != `{"detail":"Flow run not found"}` {
		t.Fatalf("%s", out)
	}
}
