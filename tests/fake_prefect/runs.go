package main

import (
	"encoding/json"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// State types and their display names.
const (
	stScheduled  = "SCHEDULED"
	stPending    = "PENDING"
	stRunning    = "RUNNING"
	stCompleted  = "COMPLETED"
	stFailed     = "FAILED"
	stCancelled  = "CANCELLED"
	stCrashed    = "CRASHED"
	stPaused     = "PAUSED"
	stCancelling = "CANCELLING"
)

var stateNames = map[string]string{
	stScheduled: "Scheduled", stPending: "Pending", stRunning: "Running",
	stCompleted: "Completed", stFailed: "Failed", stCancelled: "Cancelled",
	stCrashed: "Crashed", stPaused: "Paused", stCancelling: "Cancelling",
}

func isFinal(t string) bool {
	return t == stCompleted || t == stFailed || t == stCancelled || t == stCrashed
}

// deployment is immutable once stored; a change replaces it.
type deployment struct {
	ID, Name, FlowName, FlowID string
	Tags                       []string
	WorkQueueName              string
	ConcurrencyLimit           int  // > 0: at most this many runs PENDING or RUNNING (edges.go)
	NoWorkPool                 bool // a deployment without a work pool (e.g. from flow.serve())
	Required                   []string
	PropTypes                  map[string]string // property -> JSON schema "type"
	PropOrder                  []string          // sorted keys of PropTypes
	Enforce                    bool
	Defaults                   map[string]json.RawMessage
	JSON                       []byte // pre-rendered response body
}

type deploymentJSON struct {
	ID                     string                     `json:"id"`
	Name                   string                     `json:"name"`
	FlowID                 string                     `json:"flow_id"`
	Tags                   []string                   `json:"tags"`
	WorkQueueName          string                     `json:"work_queue_name"`
	ParameterOpenAPISchema map[string]any             `json:"parameter_openapi_schema"`
	EnforceParameterSchema bool                       `json:"enforce_parameter_schema"`
	Parameters             map[string]json.RawMessage `json:"parameters"`
	ConcurrencyLimit       *int                       `json:"concurrency_limit"`
}

func (d *deployment) render(properties map[string]json.RawMessage) {
	schema := map[string]any{"type": "object", "title": "Parameters", "definitions": map[string]any{}}
	if properties == nil {
		properties = map[string]json.RawMessage{}
	}
	schema["properties"] = properties
	if len(d.Required) > 0 {
		schema["required"] = d.Required
	}
	defaults := d.Defaults
	if defaults == nil {
		defaults = map[string]json.RawMessage{}
	}
	var limit *int
	if d.ConcurrencyLimit > 0 {
		limit = &d.ConcurrencyLimit
	}
	d.JSON, _ = json.Marshal(deploymentJSON{
		ID: d.ID, Name: d.Name, FlowID: d.FlowID, Tags: d.Tags, WorkQueueName: d.WorkQueueName,
		ParameterOpenAPISchema: schema, EnforceParameterSchema: d.Enforce, Parameters: defaults,
		ConcurrencyLimit: limit,
	})
}

// manualState is a state set through set_state; it overrides the schedule.
// A CANCELLING state with cancels=true turns CANCELLED at cancelAt.
type manualState struct {
	typ, name, message string
	at                 time.Time
	tid                string
	cancels            bool
	cancelAt           time.Time
}

type flowRun struct {
	seq                        int
	id, name, flowID, deployID string
	params                     json.RawMessage
	tags                       []string
	idemKey                    *string
	parentTaskRunID            *string
	workQueue                  string
	jobVars, labels            json.RawMessage
	created                    time.Time
	createdStr                 string

	// Lazily evaluated schedule: SCHEDULED until tPending, PENDING until
	// tRunning, RUNNING until tFinal, then final. hasSchedule=false keeps
	// the run SCHEDULED forever.
	hasSchedule                bool
	tPending, tRunning, tFinal time.Time
	final                      string
	schedName                  string
	tAwait                     time.Time // non-zero: "AwaitingConcurrencySlot" from then to tPending
	finalMsg                   string    // the final state's message (a crash's)
	manual                     *manualState
	endedAt                    time.Time // first final, once a later manual state replaced it
}

// runState is a computed view of a run at some instant.
type runState struct {
	typ, name, message string
	at                 time.Time
	tid                string
	start, end         time.Time // zero = null
	runCount           int
}

func (r *flowRun) stateAt(now time.Time) runState {
	var st runState
	if m := r.manual; m != nil {
		if m.cancels && !now.Before(m.cancelAt) {
			st = runState{typ: stCancelled, name: "Cancelled", message: m.message, at: m.cancelAt}
		} else {
			st = runState{typ: m.typ, name: m.name, message: m.message, at: m.at, tid: m.tid}
		}
		if r.hasSchedule && !r.tRunning.After(m.at) {
			st.start, st.runCount = r.tRunning, 1
		} else if m.typ == stRunning {
			st.start, st.runCount = m.at, 1
		}
		if isFinal(st.typ) {
			st.end = st.at
		}
		return st
	}
	switch {
	case !r.hasSchedule || now.Before(r.tPending):
		if !r.tAwait.IsZero() && !now.Before(r.tAwait) {
			return runState{typ: stScheduled, name: "AwaitingConcurrencySlot", at: r.tAwait}
		}
		return runState{typ: stScheduled, name: r.schedName, at: r.created}
	case now.Before(r.tRunning):
		return runState{typ: stPending, name: "Pending", at: r.tPending}
	case now.Before(r.tFinal):
		return runState{typ: stRunning, name: "Running", at: r.tRunning, start: r.tRunning, runCount: 1}
	default:
		st = runState{typ: r.final, name: stateNames[r.final], message: r.finalMsg, at: r.tFinal, end: r.tFinal}
		if r.final == stCancelled && r.tRunning.Equal(r.tFinal) {
			return st // cancelled before it ran
		}
		st.start, st.runCount = r.tRunning, 1
		return st
	}
}

// applySchedule fixes the run's timeline at creation. Per-run overrides come
// from the parameters __fake_final, __fake_running_ms, __fake_scheduled_ms
// and __fake_pending_ms; any of them enables a schedule (all-zero durations)
// even when none is configured.
func (r *flowRun) applySchedule(sc *Schedule, ov fakeOverrides) {
	r.schedName = "Scheduled"
	if sc == nil && !ov.any {
		return
	}
	var s Schedule
	if sc != nil {
		s = *sc
	}
	if s.Late {
		r.schedName = "Late"
	}
	if s.ScheduledName != "" {
		r.schedName = s.ScheduledName
	}
	if ov.scheduledMs >= 0 {
		s.ScheduledMs = ov.scheduledMs
	}
	if ov.pendingMs >= 0 {
		s.PendingMs = ov.pendingMs
	}
	if ov.runningMs >= 0 {
		s.RunningMs = ov.runningMs
	}
	final := ov.final
	if final == "" {
		u := rand.Float64()
		switch {
		case u < s.CrashRate:
			final = stCrashed
		case u < s.CrashRate+s.FailRate:
			final = stFailed
		case u < s.CrashRate+s.FailRate+s.CancelRate:
			final = stCancelled
		default:
			final = stCompleted
		}
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	r.hasSchedule = true
	r.final = final
	r.tPending = r.created.Add(ms(s.ScheduledMs))
	r.tRunning = r.tPending.Add(ms(s.PendingMs))
	r.tFinal = r.tRunning.Add(ms(s.RunningMs))
}

type fakeOverrides struct {
	any                               bool
	final                             string
	neverStart                        string // "SCHEDULED" or "PENDING": __fake_never_start
	scheduledMs, pendingMs, runningMs int64
}

type stateJSON struct {
	Type         string            `json:"type"`
	Name         string            `json:"name"`
	Message      string            `json:"message"`
	Timestamp    string            `json:"timestamp"`
	StateDetails map[string]string `json:"state_details"`
}

var emptyDetails = map[string]string{}

func (st runState) json() stateJSON {
	d := emptyDetails
	if st.tid != "" {
		d = map[string]string{"transition_id": st.tid}
	}
	return stateJSON{Type: st.typ, Name: st.name, Message: st.message, Timestamp: ts(st.at), StateDetails: d}
}

type taskRun struct {
	seq                  int
	id                   string
	flowRunID            *string
	taskKey, dynamicKey  string
	name                 string
	stateType, stateName *string
	stateAt              time.Time
	created              time.Time
}

type taskRunJSON struct {
	ID         string     `json:"id"`
	FlowRunID  *string    `json:"flow_run_id"`
	TaskKey    string     `json:"task_key"`
	DynamicKey string     `json:"dynamic_key"`
	Name       string     `json:"name"`
	StateType  *string    `json:"state_type"`
	StateName  *string    `json:"state_name"`
	State      *stateJSON `json:"state"`
	Created    string     `json:"created"`
}

type csrfToken struct {
	token   string
	expires time.Time
}

// store holds all mutable API state behind one mutex.
type store struct {
	mu           sync.Mutex
	deployments  map[string]*deployment // by id
	depByName    map[string]*deployment // flow "\x00" name
	flowIDs      map[string]string      // flow name -> flow id
	runs         []*flowRun
	runByID      map[string]*flowRun
	idem         map[string]*flowRun   // flow id "\x00" key
	byKey        map[string][]*flowRun // idempotency key -> runs
	byParentTask map[string]*flowRun   // parent_task_run_id -> newest child
	taskRuns     []*taskRun
	taskByID     map[string]*taskRun
	taskByKey    map[string]*taskRun // flow run "\x00" task key "\x00" dynamic key
	csrf         map[string]csrfToken
	setStates    []setStateRecord // every validated set_state request, in order
	nextSeq      int              // runs' creation order (deleted runs leave gaps)
	edges        edgeState
}

const (
	demoDeploymentID = "00000000-0000-4000-8000-000000000001"
	demoFlowID       = "00000000-0000-4000-8000-0000000000f1"
)

func newStore() *store {
	st := &store{}
	st.reset()
	return st
}

// reset must be called with mu held (or before the store is shared).
func (st *store) reset() {
	st.deployments = map[string]*deployment{}
	st.depByName = map[string]*deployment{}
	st.flowIDs = map[string]string{}
	st.runs = nil
	st.runByID = map[string]*flowRun{}
	st.idem = map[string]*flowRun{}
	st.byKey = map[string][]*flowRun{}
	st.byParentTask = map[string]*flowRun{}
	st.taskRuns = nil
	st.taskByID = map[string]*taskRun{}
	st.taskByKey = map[string]*taskRun{}
	st.csrf = map[string]csrfToken{}
	st.setStates = nil
	st.nextSeq = 0
	st.edges.reset()
	d := &deployment{ID: demoDeploymentID, Name: "demo", FlowName: "demo-flow", FlowID: demoFlowID,
		Tags: []string{}, WorkQueueName: "default"}
	st.putDeployment(d, nil)
}

// putDeployment stores d, replacing any deployment with the same id or the
// same flow/name. Must be called with mu held.
func (st *store) putDeployment(d *deployment, properties map[string]json.RawMessage) {
	if old := st.deployments[d.ID]; old != nil {
		delete(st.depByName, old.FlowName+"\x00"+old.Name)
	}
	if old := st.depByName[d.FlowName+"\x00"+d.Name]; old != nil {
		delete(st.deployments, old.ID)
	}
	if d.FlowID == "" {
		d.FlowID = st.flowIDs[d.FlowName]
		if d.FlowID == "" {
			d.FlowID = newUUID()
		}
	}
	if _, ok := st.flowIDs[d.FlowName]; !ok {
		st.flowIDs[d.FlowName] = d.FlowID
	}
	d.PropOrder = d.PropOrder[:0]
	for k := range d.PropTypes {
		d.PropOrder = append(d.PropOrder, k)
	}
	sort.Strings(d.PropOrder)
	d.render(properties)
	st.deployments[d.ID] = d
	st.depByName[d.FlowName+"\x00"+d.Name] = d
}

// insertRun adds a new run to every index. Must be called with mu held.
func (st *store) insertRun(r *flowRun) {
	r.seq = st.nextSeq
	st.nextSeq++
	st.runs = append(st.runs, r)
	st.runByID[r.id] = r
	if r.idemKey != nil {
		st.idem[r.flowID+"\x00"+*r.idemKey] = r
		st.byKey[*r.idemKey] = append(st.byKey[*r.idemKey], r)
	}
	if r.parentTaskRunID != nil {
		st.byParentTask[*r.parentTaskRunID] = r
	}
}

// taskView renders a task run, mirroring the state of the child flow run
// that names it as parent_task_run_id. Must be called with mu held.
func (st *store) taskView(t *taskRun, now time.Time) taskRunJSON {
	v := taskRunJSON{ID: t.id, FlowRunID: t.flowRunID, TaskKey: t.taskKey, DynamicKey: t.dynamicKey,
		Name: t.name, StateType: t.stateType, StateName: t.stateName, Created: ts(t.created)}
	if child := st.byParentTask[t.id]; child != nil {
		cs := child.stateAt(now)
		v.StateType, v.StateName = &cs.typ, &cs.name
		sj := cs.json()
		sj.StateDetails = emptyDetails
		v.State = &sj
	} else if t.stateType != nil {
		sj := stateJSON{Type: *t.stateType, Name: *t.stateName, Timestamp: ts(t.stateAt), StateDetails: emptyDetails}
		v.State = &sj
	}
	return v
}
