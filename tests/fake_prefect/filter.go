package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// POST /flow_runs/filter and POST /task_runs/filter.

var (
	frFilterTop = setOf("flow_runs", "flows", "deployments", "task_runs", "work_pools",
		"work_pool_queues", "sort", "limit", "offset")
	frFilterKeys = setOf("id", "name", "tags", "state", "idempotency_key", "parent_task_run_id",
		"deployment_id", "operator", "start_time", "expected_start_time", "next_scheduled_start_time",
		"parent_flow_run_id", "work_queue_name", "flow_version")
	frSorts = []string{"ID_DESC", "START_TIME_ASC", "START_TIME_DESC", "EXPECTED_START_TIME_ASC",
		"EXPECTED_START_TIME_DESC", "NAME_ASC", "NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC"}
	trFilterTop  = setOf("flows", "flow_runs", "task_runs", "deployments", "sort", "limit", "offset")
	trFilterKeys = setOf("id", "name", "tags", "state", "start_time", "expected_start_time",
		"subflow_runs", "flow_run_id", "operator")
	trSorts = []string{"ID_DESC", "EXPECTED_START_TIME_ASC", "EXPECTED_START_TIME_DESC", "NAME_ASC",
		"NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC"}
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

// frFilter is the parsed flow_runs part of a filter body; nil maps mean
// "no condition".
type frFilter struct {
	idList                                         []string
	ids, notIDs, keys, ptrs, deps, types, notTypes map[string]bool
	stateNames, names                              map[string]bool
	ptrNull, depNull                               *bool
	tagsAll                                        []string
	tagsNull                                       *bool
}

func parseFRFilter(raw json.RawMessage, errs *[]valErr) frFilter {
	var f frFilter
	at := []any{"body", "flow_runs"}
	m, e := decodeObject(raw, at, true)
	if e != nil {
		*errs = append(*errs, e...)
		return f
	}
	if e := checkKeys(m, frFilterKeys, at); e != nil {
		*errs = append(*errs, e...)
		return f
	}
	sub := func(field string, allowed map[string]bool) obj {
		raw, ok := m.get(field)
		if !ok || isNull(raw) {
			return nil
		}
		inner, e := decodeObject(raw, loc(at, field), true)
		if e == nil {
			e = checkKeys(inner, allowed, loc(at, field))
		}
		if e != nil {
			*errs = append(*errs, e...)
			return nil
		}
		return inner
	}
	list := func(m obj, key string, a []any) (map[string]bool, []string) {
		if raw, ok := m.get(key); !ok || isNull(raw) {
			return nil, nil
		}
		l := optStrings(m, key, a, errs)
		return toSet(l), l
	}
	if id := sub("id", setOf("any_", "not_any_")); id != nil {
		f.ids, f.idList = list(id, "any_", loc(at, "id"))
		f.notIDs, _ = list(id, "not_any_", loc(at, "id"))
	}
	if k := sub("idempotency_key", setOf("any_", "not_any_")); k != nil {
		f.keys, _ = list(k, "any_", loc(at, "idempotency_key"))
	}
	if p := sub("parent_task_run_id", setOf("any_", "is_null_", "operator")); p != nil {
		f.ptrs, _ = list(p, "any_", loc(at, "parent_task_run_id"))
		f.ptrNull = optBool(p, "is_null_", loc(at, "parent_task_run_id"), errs)
	}
	if p := sub("deployment_id", setOf("any_", "is_null_", "operator")); p != nil {
		f.deps, _ = list(p, "any_", loc(at, "deployment_id"))
		f.depNull = optBool(p, "is_null_", loc(at, "deployment_id"), errs)
	}
	if p := sub("name", setOf("any_", "like_")); p != nil {
		f.names, _ = list(p, "any_", loc(at, "name"))
	}
	if p := sub("tags", setOf("all_", "any_", "is_null_", "operator")); p != nil {
		_, f.tagsAll = list(p, "all_", loc(at, "tags"))
		f.tagsNull = optBool(p, "is_null_", loc(at, "tags"), errs)
	}
	if stm := sub("state", setOf("type", "name", "operator")); stm != nil {
		sat := loc(at, "state")
		if raw, ok := stm.get("type"); ok && !isNull(raw) {
			if t, e := decodeObject(raw, loc(sat, "type"), true); e != nil {
				*errs = append(*errs, e...)
			} else if e := checkKeys(t, setOf("any_", "not_any_"), loc(sat, "type")); e != nil {
				*errs = append(*errs, e...)
			} else {
				f.types, _ = list(t, "any_", loc(sat, "type"))
				f.notTypes, _ = list(t, "not_any_", loc(sat, "type"))
			}
		}
		if raw, ok := stm.get("name"); ok && !isNull(raw) {
			if t, e := decodeObject(raw, loc(sat, "name"), true); e != nil {
				*errs = append(*errs, e...)
			} else if e := checkKeys(t, setOf("any_", "not_any_"), loc(sat, "name")); e != nil {
				*errs = append(*errs, e...)
			} else {
				f.stateNames, _ = list(t, "any_", loc(sat, "name"))
			}
		}
	}
	return f
}

func (f *frFilter) match(r *flowRun, st runState) bool {
	if f.ids != nil && !f.ids[r.id] || f.notIDs != nil && f.notIDs[r.id] {
		return false
	}
	if f.keys != nil && (r.idemKey == nil || !f.keys[*r.idemKey]) {
		return false
	}
	if f.ptrs != nil && (r.parentTaskRunID == nil || !f.ptrs[*r.parentTaskRunID]) {
		return false
	}
	if f.ptrNull != nil && *f.ptrNull != (r.parentTaskRunID == nil) {
		return false
	}
	if f.deps != nil && !f.deps[r.deployID] || f.depNull != nil && *f.depNull {
		return false
	}
	if f.names != nil && !f.names[r.name] {
		return false
	}
	for _, t := range f.tagsAll {
		if !slices.Contains(r.tags, t) {
			return false
		}
	}
	if f.tagsNull != nil && *f.tagsNull != (len(r.tags) == 0) {
		return false
	}
	if f.types != nil && !f.types[st.typ] || f.notTypes != nil && f.notTypes[st.typ] {
		return false
	}
	if f.stateNames != nil && !f.stateNames[st.name] {
		return false
	}
	return true
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
	var f frFilter
	if raw, ok := m.get("flow_runs"); ok && !isNull(raw) {
		f = parseFRFilter(raw, &errs)
	}
	if errs != nil {
		return resp422(errs...)
	}
	if n := int64(len(f.idList)); n > 0 {
		s.stats.add(func(s *stats) { s.filterMaxIDs = max(s.filterMaxIDs, n) })
	}
	now := s.now()
	st := s.store
	st.mu.Lock()
	var cands []*flowRun
	switch {
	case f.ids != nil:
		seen := make(map[string]bool, len(f.idList))
		for _, id := range f.idList {
			if r := st.runByID[lowerID(id)]; r != nil && !seen[r.id] {
				seen[r.id] = true
				cands = append(cands, r)
			}
		}
	case f.keys != nil:
		for k := range f.keys {
			cands = append(cands, st.byKey[k]...)
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
		if f.match(r, rs) {
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
	var ids, frIDs map[string]bool
	if raw, ok := m.get("task_runs"); ok && !isNull(raw) {
		at := []any{"body", "task_runs"}
		tm, e := decodeObject(raw, at, true)
		if e == nil {
			e = checkKeys(tm, trFilterKeys, at)
		}
		if e != nil {
			return resp422(e...)
		}
		if l, ok := anyList(tm, "id", setOf("any_", "not_any_"), at, &errs); ok {
			ids = toSet(l)
		}
		if l, ok := anyList(tm, "flow_run_id", setOf("any_", "is_null_"), at, &errs); ok {
			frIDs = toSet(l)
		}
	}
	if errs != nil {
		return resp422(errs...)
	}
	now := s.now()
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	var hits []*taskRun
	for _, t := range st.taskRuns {
		if ids != nil && !ids[t.id] {
			continue
		}
		if frIDs != nil && (t.flowRunID == nil || !frIDs[*t.flowRunID]) {
			continue
		}
		hits = append(hits, t)
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
