package main

import (
	"slices"
	"strings"
	"time"
)

// Matching the parsed filters (filter_spec.go) against the fake's rows, one
// function per Prefect filter model, as its _get_filter_list builds the SQL
// (src/prefect/server/schemas/filters.py). The fake has no flow versions,
// next scheduled times, created_by, deployment concurrency limits or paused
// deployments: those columns are NULL (or false), and a condition on them is
// what SQL makes of NULL (IN and comparisons false, is_null_ true).

// The fake has one work pool; every run with a work queue is in it.
const (
	fakeWorkPoolID   = "00000000-0000-4000-8000-0000000000a1"
	fakeWorkPoolName = "default"
	fakeWorkPoolType = "process"
)

func idCond(c *conds, n *fnode, id string) {
	if n == nil {
		return
	}
	if n.has("any_") {
		c.add(inList(n.strs("any_"), id))
	}
	if n.has("not_any_") {
		c.add(!inList(n.strs("not_any_"), id))
	}
}

// matchFlowRun is FlowRunFilter (filters.py) for one run; mu must be held.
func (st *store) matchFlowRun(n *fnode, r *flowRun, rs runState) bool {
	if n == nil {
		return true
	}
	c := conds{or: n.or}
	idCond(&c, n.sub("id"), r.id)
	nameCond(&c, n.sub("name"), r.name)
	tagsCond(&c, n.sub("tags"), r.tags)
	if d := n.sub("deployment_id"); d != nil {
		in := conds{or: d.or}
		if d.has("any_") {
			in.add(inListN(d.strs("any_"), strp(r.deployID)))
		}
		if d.has("is_null_") {
			in.add(d.boolean("is_null_") == (r.deployID == ""))
		}
		c.add(in.result())
	}
	if q := n.sub("work_queue_name"); q != nil {
		in := conds{or: q.or}
		if q.has("any_") {
			in.add(inListN(q.strs("any_"), strp(r.workQueue)))
		}
		if q.has("is_null_") {
			in.add(q.boolean("is_null_") == (r.workQueue == ""))
		}
		c.add(in.result())
	}
	if f := n.sub("flow_version"); f != nil && f.has("any_") {
		c.add(false) // flow_version is NULL
	}
	if s := n.sub("state"); s != nil {
		in := conds{or: s.or}
		if t := s.sub("type"); t != nil {
			if t.has("any_") {
				in.add(inList(t.strs("any_"), rs.typ))
			}
			if t.has("not_any_") {
				in.add(!inList(t.strs("not_any_"), rs.typ))
			}
		}
		if nm := s.sub("name"); nm != nil {
			if nm.has("any_") {
				in.add(inList(nm.strs("any_"), rs.name))
			}
			if nm.has("not_any_") {
				in.add(!inList(nm.strs("not_any_"), rs.name))
			}
		}
		c.add(in.result())
	}
	if t := n.sub("start_time"); t != nil {
		in := conds{}
		timeCond(&in, t, rs.start)
		c.add(in.result())
	}
	if t := n.sub("end_time"); t != nil {
		in := conds{}
		timeCond(&in, t, rs.end)
		c.add(in.result())
	}
	if t := n.sub("expected_start_time"); t != nil {
		in := conds{}
		timeCond(&in, t, r.created) // the fake's expected_start_time is its creation time
		c.add(in.result())
	}
	if t := n.sub("next_scheduled_start_time"); t != nil {
		in := conds{}
		timeCond(&in, t, time.Time{}) // NULL
		c.add(in.result())
	}
	if p := n.sub("parent_flow_run_id"); p != nil && p.has("any_") {
		// Runs whose parent task run belongs to one of these flow runs.
		ok := false
		if r.parentTaskRunID != nil {
			if t := st.taskByID[*r.parentTaskRunID]; t != nil && t.flowRunID != nil {
				ok = inList(p.strs("any_"), *t.flowRunID)
			}
		}
		c.add(ok)
	}
	if p := n.sub("parent_task_run_id"); p != nil {
		in := conds{or: p.or}
		if p.has("any_") {
			in.add(inListN(p.strs("any_"), r.parentTaskRunID))
		}
		if p.has("is_null_") {
			in.add(p.boolean("is_null_") == (r.parentTaskRunID == nil))
		}
		c.add(in.result())
	}
	if k := n.sub("idempotency_key"); k != nil {
		if k.has("any_") {
			c.add(inListN(k.strs("any_"), r.idemKey))
		}
		if k.has("not_any_") {
			c.add(notInListN(k.strs("not_any_"), r.idemKey))
		}
	}
	if cb := n.sub("created_by"); cb != nil {
		in := conds{or: cb.or}
		if cb.has("id_") {
			in.add(false) // created_by is NULL
		}
		if cb.has("type_") {
			in.add(false)
		}
		if cb.has("is_null_") {
			in.add(cb.boolean("is_null_"))
		}
		c.add(in.result())
	}
	return c.result()
}

// matchFlow is FlowFilter for the run's flow; mu must be held.
func (st *store) matchFlow(n *fnode, r *flowRun) bool {
	c := conds{or: n.or}
	idCond(&c, n.sub("id"), r.flowID)
	if d := n.sub("deployment"); d != nil && d.has("is_null_") {
		hasDep := false
		for _, dep := range st.deployments {
			hasDep = hasDep || dep.FlowID == r.flowID
		}
		c.add(d.boolean("is_null_") != hasDep)
	}
	name := ""
	for fname, id := range st.flowIDs {
		if id == r.flowID {
			name = fname
		}
	}
	nameCond(&c, n.sub("name"), name)
	tagsCond(&c, n.sub("tags"), nil) // the fake's flows have no tags
	return c.result()
}

// matchDeployment is DeploymentFilter for the run's deployment: runs without
// one never match (models/flow_runs.py: an EXISTS on Deployment.id ==
// FlowRun.deployment_id); mu must be held.
func (st *store) matchDeployment(n *fnode, r *flowRun) bool {
	d := st.deployments[r.deployID]
	if d == nil {
		return false
	}
	c := conds{or: n.or}
	idCond(&c, n.sub("id"), d.ID)
	nameCond(&c, n.sub("name"), d.Name)
	if f := n.sub("flow_or_deployment_name"); f != nil && f.has("like_") {
		c.add(ilike(d.Name, f.str("like_")) || ilike(d.FlowName, f.str("like_")))
	}
	if p := n.sub("paused"); p != nil && p.has("eq_") {
		c.add(!p.boolean("eq_")) // the fake's deployments are never paused
	}
	tagsCond(&c, n.sub("tags"), d.Tags)
	if q := n.sub("work_queue_name"); q != nil && q.has("any_") {
		c.add(inList(q.strs("any_"), d.WorkQueueName))
	}
	if l := n.sub("concurrency_limit"); l != nil {
		if l.has("ge_") || l.has("le_") {
			c.add(false) // NULL
		}
		if l.has("is_null_") {
			c.add(l.boolean("is_null_"))
		}
	}
	return c.result()
}

// matchWorkPool is WorkPoolFilter (an EXISTS through the run's work queue).
func matchWorkPool(n *fnode, r *flowRun) bool {
	if r.workQueue == "" {
		return false
	}
	c := conds{or: n.or}
	if x := n.sub("id"); x != nil && x.has("any_") {
		c.add(inList(x.strs("any_"), fakeWorkPoolID))
	}
	if x := n.sub("name"); x != nil && x.has("any_") {
		c.add(inList(x.strs("any_"), fakeWorkPoolName))
	}
	if x := n.sub("type"); x != nil && x.has("any_") {
		c.add(inList(x.strs("any_"), fakeWorkPoolType))
	}
	return c.result()
}

// matchWorkQueue is WorkQueueFilter (the body's work_pool_queues). The fake's
// queues have no ids of their own: an id condition never matches.
func matchWorkQueue(n *fnode, r *flowRun) bool {
	if r.workQueue == "" {
		return false
	}
	c := conds{or: n.or}
	if x := n.sub("id"); x != nil && x.has("any_") {
		c.add(false)
	}
	if x := n.sub("name"); x != nil {
		if x.has("any_") {
			c.add(inList(x.strs("any_"), r.workQueue))
		}
		if x.has("startswith_") {
			c.add(slices.ContainsFunc(x.strs("startswith_"), func(p string) bool {
				return strings.HasPrefix(r.workQueue, p)
			}))
		}
	}
	return c.result()
}

// matchTaskRun is TaskRunFilter for one task run; mu must be held.
func (st *store) matchTaskRun(n *fnode, t *taskRun, now time.Time) bool {
	if n == nil {
		return true
	}
	v := st.taskView(t, now)
	c := conds{or: n.or}
	if x := n.sub("id"); x != nil && x.has("any_") {
		c.add(inList(x.strs("any_"), t.id))
	}
	nameCond(&c, n.sub("name"), t.name)
	tagsCond(&c, n.sub("tags"), nil) // placeholder task runs have no tags
	if s := n.sub("state"); s != nil {
		in := conds{or: s.or}
		if x := s.sub("type"); x != nil && x.has("any_") {
			in.add(inListN(x.strs("any_"), v.StateType))
		}
		if x := s.sub("name"); x != nil && x.has("any_") {
			in.add(inListN(x.strs("any_"), v.StateName))
		}
		c.add(in.result())
	}
	var start, end time.Time
	if child := st.byParentTask[t.id]; child != nil {
		cs := child.stateAt(now)
		start, end = cs.start, cs.end
	}
	for key, tm := range map[string]time.Time{"start_time": start, "end_time": end, "expected_start_time": t.created} {
		if x := n.sub(key); x != nil {
			in := conds{}
			timeCond(&in, x, tm)
			c.add(in.result())
		}
	}
	if x := n.sub("subflow_runs"); x != nil && x.has("exists_") {
		c.add(x.boolean("exists_") == (st.byParentTask[t.id] != nil))
	}
	if x := n.sub("flow_run_id"); x != nil {
		// TaskRunFilterFlowRunId: is_null_ defaults to False, so without any_
		// it keeps the task runs that have a flow run.
		isNull := false
		if x.has("is_null_") {
			isNull = x.boolean("is_null_")
		}
		switch {
		case isNull:
			c.add(t.flowRunID == nil)
		case !x.has("any_"):
			c.add(t.flowRunID != nil)
		default:
			c.add(inListN(x.strs("any_"), t.flowRunID))
		}
	}
	return c.result()
}
