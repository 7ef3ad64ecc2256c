package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// POST /flow_runs/filter and POST /task_runs/filter.

var (
	frFilterTop = setOf("flow_runs", "flows", "deployments", "task_runs", "work_pools",
		"work_pool_queues", "sort", "limit", "offset")
	frSorts = []string{"ID_DESC", "START_TIME_ASC", "START_TIME_DESC", "EXPECTED_START_TIME_ASC",
		"EXPECTED_START_TIME_DESC", "NAME_ASC", "NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC"}
	trFilterTop = setOf("flows", "flow_runs", "task_runs", "deployments", "sort", "limit", "offset")
	// schemas/sorting.py TaskRunSort (3.9.1).
	trSorts = []string{"ID_DESC", "EXPECTED_START_TIME_ASC", "EXPECTED_START_TIME_DESC", "NAME_ASC",
		"NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC", "DURATION_DESC", "DURATION_ASC"}
)

// page holds the common limit/offset/sort of filter bodies.
type page struct {
	limit, offset int
	sort          string
}

func parsePage(m obj, sorts []string, errs *[]valErr) page {
	pg := page{limit: 200, sort: "ID_DESC"}
	intField := func(key string, dst *int, maxV int) {
		raw, ok := m.get(key)
		if !ok || isNull(raw) {
			return
		}
		var f float64
		if kind(raw) != '0' || json.Unmarshal(raw, &f) != nil || f != float64(int(f)) {
			*errs = append(*errs, valErr{Loc: []any{"body", key}, Msg: "Input should be a valid integer", Type: "int_type"})
			return
		}
		n := int(f)
		if n < 0 {
			*errs = append(*errs, valErr{Loc: []any{"body", key}, Msg: "Input should be greater than or equal to 0", Type: "greater_than_equal"})
			return
		}
		if maxV > 0 && n > maxV {
			*errs = append(*errs, valErr{Loc: []any{"body", key}, Msg: "Input should be less than or equal to 200", Type: "less_than_equal"})
			return
		}
		*dst = n
	}
	intField("limit", &pg.limit, 200)
	intField("offset", &pg.offset, 0)
	if s := optString(m, "sort", []any{"body"}, errs); s != nil {
		if !slices.Contains(sorts, *s) {
			*errs = append(*errs, valErr{Loc: []any{"body", "sort"},
				Msg: "Input should be '" + strings.Join(sorts[:len(sorts)-1], "', '") + "' or '" + sorts[len(sorts)-1] + "'", Type: "enum"})
		} else {
			pg.sort = *s
		}
	}
	return pg
}

func (pg page) apply(n int) (lo, hi int) {
	lo = min(pg.offset, n)
	hi = min(lo+pg.limit, n)
	return lo, hi
}

func toSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

func filterBody(body []byte) (obj, []valErr) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return obj{}, nil
	}
	return decodeObject(body, []any{"body"}, false)
}

func hFlowRunsFilter(s *Server, _ *http.Request, _ []string, body []byte) response {
	m, errs := filterBody(body)
	if errs != nil {
		return resp422(errs...)
	}
	if errs = checkKeys(m, frFilterTop, []any{"body"}); errs != nil {
		return resp422(errs...)
	}
	pg := parsePage(m, frSorts, &errs)
	f := parseFlowRunsBody(m, &errs)
	if errs != nil {
		return resp422(errs...)
	}
	var idList []string
	if id := f.runs.sub("id"); id != nil && id.has("any_") && !f.runs.or {
		idList = id.strs("any_")
	}
	if n := int64(len(idList)); n > 0 {
		s.stats.add(func(s *stats) { s.filterMaxIDs = max(s.filterMaxIDs, n) })
	}
	var keyList []string
	if k := f.runs.sub("idempotency_key"); k != nil && k.has("any_") && !f.runs.or {
		keyList = k.strs("any_")
	}
	now := s.now()
	st := s.store
	st.mu.Lock()
	var cands []*flowRun
	switch {
	case idList != nil:
		seen := make(map[string]bool, len(idList))
		for _, id := range idList {
			if r := st.runByID[id]; r != nil && !seen[r.id] {
				seen[r.id] = true
				cands = append(cands, r)
			}
		}
	case keyList != nil:
		seen := make(map[string]bool, len(keyList))
		for _, k := range keyList {
			if !seen[k] {
				seen[k] = true
				cands = append(cands, st.byKey[k]...)
			}
		}
	default:
		cands = st.runs
	}
	// Sort small (run, state index) pairs; states are only copied for the page.
	type hit struct {
		r  *flowRun
		st int
	}
	states := make([]runState, 0, min(len(cands), 256))
	hits := make([]hit, 0, min(len(cands), 256))
	for _, r := range cands {
		rs := r.stateAt(now)
		if f.match(st, r, rs, now) {
			hits = append(hits, hit{r, len(states)})
			states = append(states, rs)
		}
	}
	switch pg.sort {
	case "ID_DESC":
		slices.SortFunc(hits, func(a, b hit) int { return strings.Compare(b.r.id, a.r.id) })
	case "NAME_ASC":
		slices.SortStableFunc(hits, func(a, b hit) int { return strings.Compare(a.r.name, b.r.name) })
	case "NAME_DESC":
		slices.SortStableFunc(hits, func(a, b hit) int { return strings.Compare(b.r.name, a.r.name) })
	case "EXPECTED_START_TIME_DESC", "START_TIME_DESC", "END_TIME_DESC":
		slices.SortFunc(hits, func(a, b hit) int { return b.r.seq - a.r.seq })
	default: // ascending times: creation order
		slices.SortFunc(hits, func(a, b hit) int { return a.r.seq - b.r.seq })
	}
	lo, hi := pg.apply(len(hits))
	st.mu.Unlock()
	views := make([]runView, hi-lo)
	for i, h := range hits[lo:hi] {
		views[i] = runView{h.r, states[h.st]}
	}
	return runsResp(views, "")
}

func hTaskRunsFilter(s *Server, _ *http.Request, _ []string, body []byte) response {
	m, errs := filterBody(body)
	if errs != nil {
		return resp422(errs...)
	}
	if errs = checkKeys(m, trFilterTop, []any{"body"}); errs != nil {
		return resp422(errs...)
	}
	pg := parsePage(m, trSorts, &errs)
	f := parseFlowRunsBody(m, &errs)
	if errs != nil {
		return resp422(errs...)
	}
	now := s.now()
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	var hits []*taskRun
	for _, t := range st.taskRuns {
		if f.matchTask(st, t, now) {
			hits = append(hits, t)
		}
	}
	switch pg.sort {
	case "ID_DESC":
		slices.SortFunc(hits, func(a, b *taskRun) int { return strings.Compare(b.id, a.id) })
	case "NAME_ASC":
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].name < hits[j].name })
	case "NAME_DESC":
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].name > hits[j].name })
	case "EXPECTED_START_TIME_DESC", "END_TIME_DESC":
		sort.Slice(hits, func(i, j int) bool { return hits[i].seq > hits[j].seq })
	}
	lo, hi := pg.apply(len(hits))
	out := make([]taskRunJSON, 0, hi-lo)
	for _, t := range hits[lo:hi] {
		out = append(out, st.taskView(t, now))
	}
	return jsonResp(200, out)
}

// flowRunsBody is a parsed filter body: the members of read_flow_runs
// (api/flow_runs.py) and read_task_runs (api/task_runs.py), nil when absent.
type flowRunsBody struct {
	flows, runs, tasks, deployments, pools, queues *fnode
}

func parseFlowRunsBody(m obj, errs *[]valErr) flowRunsBody {
	var b flowRunsBody
	for _, x := range []struct {
		key  string
		spec *fmodel
		dst  **fnode
	}{{"flows", specFlow, &b.flows}, {"flow_runs", specFlowRun, &b.runs}, {"task_runs", specTaskRun, &b.tasks},
		{"deployments", specDeployment, &b.deployments}, {"work_pools", specWorkPool, &b.pools},
		{"work_pool_queues", specWorkQueue, &b.queues}} {
		if raw, ok := m.get(x.key); ok && !isNull(raw) {
			*x.dst = parseFilterModel(raw, x.spec, []any{"body", x.key}, errs)
		}
	}
	return b
}

// match applies the body to a flow run as models/flow_runs.py
// _apply_flow_run_filters does: the flow run filter, then an EXISTS for each
// other filter given (deployment, work pool, work queue, flow, task run).
func (b *flowRunsBody) match(st *store, r *flowRun, rs runState, now time.Time) bool {
	if !st.matchFlowRun(b.runs, r, rs) {
		return false
	}
	if b.deployments != nil && !st.matchDeployment(b.deployments, r) {
		return false
	}
	if b.pools != nil && !matchWorkPool(b.pools, r) {
		return false
	}
	if b.queues != nil && !matchWorkQueue(b.queues, r) {
		return false
	}
	if b.flows != nil && !st.matchFlow(b.flows, r) {
		return false
	}
	if b.tasks != nil {
		found := false
		for _, t := range st.taskRuns {
			if t.flowRunID != nil && *t.flowRunID == r.id && st.matchTaskRun(b.tasks, t, now) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matchTask applies the body to a task run as models/task_runs.py
// _apply_task_run_filters does: the task run filter, then EXISTS through its
// flow run for the flow run, flow and deployment filters.
func (b *flowRunsBody) matchTask(st *store, t *taskRun, now time.Time) bool {
	if !st.matchTaskRun(b.tasks, t, now) {
		return false
	}
	if b.runs == nil && b.flows == nil && b.deployments == nil && b.pools == nil && b.queues == nil {
		return true
	}
	var r *flowRun
	if t.flowRunID != nil {
		r = st.runByID[*t.flowRunID]
	}
	if r == nil {
		return false
	}
	if b.runs != nil && !st.matchFlowRun(b.runs, r, r.stateAt(now)) {
		return false
	}
	if b.deployments != nil && !st.matchDeployment(b.deployments, r) {
		return false
	}
	if b.flows != nil && !st.matchFlow(b.flows, r) {
		return false
	}
	return true
}
