package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The filter bodies of POST /flow_runs/filter and /task_runs/filter, as
// Prefect 3.9.1 declares them in src/prefect/server/schemas/filters.py: every
// filter model is a pydantic model with extra="forbid" (PrefectFilterBaseModel),
// so an unknown key anywhere is a 422; ids are list[UUID] (uuid_parsing),
// state types are the StateType enum (schemas/states.py), times are
// DateTime; "operator" ("and_"/"or_") exists only on the
// PrefectOperatorFilterBaseModel subclasses. Every field Prefect declares is
// accepted and filters: a filter that ignored a field would return rows
// Prefect would not.

type fkind int

const (
	fUUIDs fkind = iota
	fStrs
	fStr
	fBool
	fTime
	fStateTypes
	fInt
	fNested
)

type ffield struct {
	kind fkind
	sub  *fmodel
}

type fmodel struct {
	op     bool // has "operator" (PrefectOperatorFilterBaseModel)
	fields map[string]ffield
}

func fm(op bool, kv ...any) *fmodel {
	m := &fmodel{op: op, fields: map[string]ffield{}}
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case fkind:
			m.fields[kv[i].(string)] = ffield{kind: v}
		case *fmodel:
			m.fields[kv[i].(string)] = ffield{kind: fNested, sub: v}
		}
	}
	return m
}

var (
	timeRange     = fm(false, "before_", fTime, "after_", fTime, "is_null_", fBool)
	timeRangeNoNl = fm(false, "before_", fTime, "after_", fTime)

	// FlowRunFilter and its members (filters.py, FlowRunFilter*).
	specFlowRun = fm(true,
		"id", fm(false, "any_", fUUIDs, "not_any_", fUUIDs),
		"name", fm(false, "any_", fStrs, "like_", fStr),
		"tags", fm(true, "all_", fStrs, "any_", fStrs, "is_null_", fBool),
		"deployment_id", fm(true, "any_", fUUIDs, "is_null_", fBool),
		"work_queue_name", fm(true, "any_", fStrs, "is_null_", fBool),
		"state", fm(true,
			"type", fm(false, "any_", fStateTypes, "not_any_", fStateTypes),
			"name", fm(false, "any_", fStrs, "not_any_", fStrs)),
		"flow_version", fm(false, "any_", fStrs),
		"start_time", timeRange,
		"end_time", timeRange,
		"expected_start_time", timeRangeNoNl,
		"next_scheduled_start_time", timeRangeNoNl,
		"parent_flow_run_id", fm(true, "any_", fUUIDs),
		"parent_task_run_id", fm(true, "any_", fUUIDs, "is_null_", fBool),
		"idempotency_key", fm(false, "any_", fStrs, "not_any_", fStrs),
		"created_by", fm(true, "id_", fUUIDs, "type_", fStrs, "is_null_", fBool),
	)
	// FlowFilter.
	specFlow = fm(true,
		"id", fm(false, "any_", fUUIDs, "not_any_", fUUIDs),
		"deployment", fm(true, "is_null_", fBool),
		"name", fm(false, "any_", fStrs, "like_", fStr),
		"tags", fm(true, "all_", fStrs, "is_null_", fBool),
	)
	// DeploymentFilter.
	specDeployment = fm(true,
		"id", fm(false, "any_", fUUIDs, "not_any_", fUUIDs),
		"name", fm(false, "any_", fStrs, "like_", fStr),
		"flow_or_deployment_name", fm(false, "like_", fStr),
		"paused", fm(false, "eq_", fBool),
		"tags", fm(true, "all_", fStrs, "any_", fStrs, "is_null_", fBool),
		"work_queue_name", fm(false, "any_", fStrs),
		"concurrency_limit", fm(false, "ge_", fInt, "le_", fInt, "is_null_", fBool),
	)
	// WorkPoolFilter and WorkQueueFilter (the body's "work_pool_queues").
	specWorkPool = fm(true,
		"id", fm(false, "any_", fUUIDs),
		"name", fm(false, "any_", fStrs),
		"type", fm(false, "any_", fStrs),
	)
	specWorkQueue = fm(true,
		"id", fm(false, "any_", fUUIDs),
		"name", fm(false, "any_", fStrs, "startswith_", fStrs),
	)
	// TaskRunFilter.
	specTaskRun = fm(true,
		"id", fm(false, "any_", fUUIDs),
		"name", fm(false, "any_", fStrs, "like_", fStr),
		"tags", fm(true, "all_", fStrs, "is_null_", fBool),
		"state", fm(true,
			"type", fm(false, "any_", fStateTypes),
			"name", fm(false, "any_", fStrs)),
		"start_time", timeRange,
		"end_time", timeRange,
		"expected_start_time", timeRangeNoNl,
		"subflow_runs", fm(false, "exists_", fBool),
		"flow_run_id", fm(true, "any_", fUUIDs, "is_null_", fBool),
	)
)

// fnode is a parsed filter model: only the keys given (and not null).
type fnode struct {
	or     bool
	values map[string]any // []string, string, bool, time.Time, int64 or *fnode
}

func (n *fnode) has(k string) bool {
	if n == nil {
		return false
	}
	_, ok := n.values[k]
	return ok
}
func (n *fnode) sub(k string) *fnode {
	if n == nil {
		return nil
	}
	v, _ := n.values[k].(*fnode)
	return v
}
func (n *fnode) strs(k string) []string { v, _ := n.values[k].([]string); return v }
func (n *fnode) str(k string) string    { v, _ := n.values[k].(string); return v }
func (n *fnode) boolean(k string) bool  { v, _ := n.values[k].(bool); return v }
func (n *fnode) tm(k string) time.Time  { v, _ := n.values[k].(time.Time); return v }
func (n *fnode) num(k string) int64     { v, _ := n.values[k].(int64); return v }

var stateTypeList = []string{"SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
	"CRASHED", "PAUSED", "CANCELLING"}

func parseFilterModel(raw json.RawMessage, spec *fmodel, at []any, errs *[]valErr) *fnode {
	m, e := decodeObject(raw, at, true)
	if e != nil {
		*errs = append(*errs, e...)
		return nil
	}
	allowed := map[string]bool{}
	for k := range spec.fields {
		allowed[k] = true
	}
	if spec.op {
		allowed["operator"] = true
	}
	if e := checkKeys(m, allowed, at); e != nil {
		*errs = append(*errs, e...)
		return nil
	}
	n := &fnode{values: map[string]any{}}
	if spec.op {
		if op := optString(m, "operator", at, errs); op != nil {
			switch *op {
			case "and_":
			case "or_":
				n.or = true
			default:
				*errs = append(*errs, valErr{Loc: loc(at, "operator"), Msg: "Input should be 'and_' or 'or_'", Type: "enum"})
			}
		}
	}
	for key, f := range spec.fields {
		raw, ok := m.get(key)
		if !ok || isNull(raw) {
			continue
		}
		a := loc(at, key)
		switch f.kind {
		case fNested:
			if sub := parseFilterModel(raw, f.sub, a, errs); sub != nil {
				n.values[key] = sub
			}
		case fStrs:
			n.values[key] = optStrings(m, key, at, errs)
		case fUUIDs, fStateTypes:
			l := optStrings(m, key, at, errs)
			out := make([]string, 0, len(l))
			for i, s := range l {
				if f.kind == fUUIDs {
					if !isUUID(s) {
						*errs = append(*errs, valErr{Loc: loc(a, i), Msg: "Input should be a valid UUID", Type: "uuid_parsing"})
						continue
					}
					out = append(out, lowerID(s))
				} else {
					if !slices.Contains(stateTypeList, s) {
						*errs = append(*errs, valErr{Loc: loc(a, i),
							Msg: "Input should be 'SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED' or 'CANCELLING'", Type: "enum"})
						continue
					}
					out = append(out, s)
				}
			}
			n.values[key] = out
		case fStr:
			if s := optString(m, key, at, errs); s != nil {
				n.values[key] = *s
			}
		case fBool:
			if b := optBool(m, key, at, errs); b != nil {
				n.values[key] = *b
			}
		case fInt:
			var v float64
			if kind(raw) != '0' || json.Unmarshal(raw, &v) != nil || v != float64(int64(v)) {
				*errs = append(*errs, valErr{Loc: a, Msg: "Input should be a valid integer", Type: "int_type"})
				continue
			}
			n.values[key] = int64(v)
		case fTime:
			s, ok := jsonString(raw)
			t, err := parsePrefectTime(s)
			if !ok || err != nil {
				*errs = append(*errs, valErr{Loc: a, Msg: "Input should be a valid datetime", Type: "datetime_parsing"})
				continue
			}
			n.values[key] = t
		}
	}
	return n
}

func parsePrefectTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return time.Time{}, err
}

// combine folds a model's conditions with its operator (and_ by default);
// no condition at all is true (PrefectFilterBaseModel.as_sql_filter).
type conds struct {
	or       bool
	n, true_ int
}

func (c *conds) add(ok bool) {
	c.n++
	if ok {
		c.true_++
	}
}
func (c *conds) result() bool {
	if c.n == 0 {
		return true
	}
	if c.or {
		return c.true_ > 0
	}
	return c.true_ == c.n
}

// ilike is SQL's ILIKE '%pattern%' as Prefect builds it for like_: % and _
// in the pattern stay wildcards.
func ilike(value, pattern string) bool {
	var b strings.Builder
	b.WriteString("(?is)^.*")
	for _, r := range pattern {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(".*$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(value)
}

func inList(l []string, v string) bool { return slices.Contains(l, v) }

// nullable string compare: SQL's IN / NOT IN are never true for NULL.
func inListN(l []string, v *string) bool    { return v != nil && slices.Contains(l, *v) }
func notInListN(l []string, v *string) bool { return v != nil && !slices.Contains(l, *v) }

func timeCond(c *conds, n *fnode, t time.Time) {
	if n == nil {
		return
	}
	if n.has("before_") {
		c.add(!t.IsZero() && !t.After(n.tm("before_")))
	}
	if n.has("after_") {
		c.add(!t.IsZero() && !t.Before(n.tm("after_")))
	}
	if n.has("is_null_") {
		c.add(n.boolean("is_null_") == t.IsZero())
	}
}

func tagsCond(c *conds, n *fnode, tags []string) {
	if n == nil {
		return
	}
	inner := conds{or: n.or}
	if n.has("all_") {
		ok := true
		for _, t := range n.strs("all_") {
			ok = ok && inList(tags, t)
		}
		inner.add(ok)
	}
	if n.has("any_") {
		ok := false
		for _, t := range n.strs("any_") {
			ok = ok || inList(tags, t)
		}
		inner.add(ok)
	}
	if n.has("is_null_") {
		inner.add(n.boolean("is_null_") == (len(tags) == 0))
	}
	c.add(inner.result())
}

func nameCond(c *conds, n *fnode, name string) {
	if n == nil {
		return
	}
	if n.has("any_") {
		c.add(inList(n.strs("any_"), name))
	}
	if n.has("like_") {
		c.add(ilike(name, n.str("like_")))
	}
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
