package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// serveControl answers the /_fake/* endpoints: no auth, no faults, not
// counted in the stats.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Method == "POST" {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return
		}
	}
	key := r.Method + " " + r.URL.Path
	var resp response
	switch key {
	case "GET /_fake/config":
		resp = jsonResp(200, s.cfg.Load())
	case "POST /_fake/config":
		resp = s.ctlConfig(body)
	case "POST /_fake/reset":
		s.Reset()
		resp = jsonResp(200, map[string]bool{"ok": true})
	case "POST /_fake/deployments":
		resp = s.ctlDeployment(body)
	case "GET /_fake/deployments":
		s.store.mu.Lock()
		list := make([]json.RawMessage, 0, len(s.store.deployments))
		for _, d := range s.store.deployments {
			list = append(list, d.JSON)
		}
		s.store.mu.Unlock()
		resp = jsonResp(200, map[string]any{"deployments": list})
	case "GET /_fake/stats":
		resp = jsonResp(200, s.Stats())
	case "GET /_fake/runs":
		now := s.now()
		s.store.mu.Lock()
		out := make([]runView, len(s.store.runs))
		for i, fr := range s.store.runs {
			out[i] = runView{fr, fr.stateAt(now)}
		}
		s.store.mu.Unlock()
		resp = runsResp(out, "runs")
	case "GET /_fake/task_runs":
		now := s.now()
		s.store.mu.Lock()
		out := make([]taskRunJSON, len(s.store.taskRuns))
		for i, t := range s.store.taskRuns {
			out[i] = s.store.taskView(t, now)
		}
		s.store.mu.Unlock()
		resp = jsonResp(200, map[string]any{"task_runs": out})
	case "POST /_fake/runs":
		resp = s.ctlCreateRun(body)
	case "GET /_fake/set_states":
		s.store.mu.Lock()
		out := append([]setStateRecord{}, s.store.setStates...)
		s.store.mu.Unlock()
		resp = jsonResp(200, map[string]any{"set_states": out})
	case "GET /_fake/peaks":
		resp = jsonResp(200, s.Peaks())
	case "GET /_fake/timeline":
		resp = jsonResp(200, map[string]any{"buckets": s.stats.timeline()})
	case "POST /_fake/clock":
		var req struct {
			AdvanceMs int64 `json:"advance_ms"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			resp = detailResp(400, "body must be {\"advance_ms\": N}")
			break
		}
		off := s.offsetNs.Add(req.AdvanceMs * int64(time.Millisecond))
		resp = jsonResp(200, map[string]int64{"offset_ms": off / int64(time.Millisecond)})
	default:
		resp = detailResp(404, "Not Found")
		if id, ok := strings.CutPrefix(r.URL.Path, "/_fake/runs/"); ok && r.Method == "POST" {
			if id, ok = strings.CutSuffix(id, "/state"); ok {
				resp = s.ctlRunState(id, body)
			}
		} else if ok && r.Method == "DELETE" && !strings.Contains(id, "/") {
			// A run deleted in Prefect (the UI, an API client, a retention job): gone from
			// reads and filters, not counted.
			s.store.mu.Lock()
			deleted := s.store.deleteRun(id)
			s.store.mu.Unlock()
			resp = response{status: 204}
			if !deleted {
				resp = detailResp(404, "Flow run not found")
			}
		}
	}
	writeResp(w, resp)
}

// ctlCreateRun creates a flow run outside the API (e.g. a parent flow run):
// {"name"?, "deployment_id"? (default the demo deployment), "tags"?,
// "state"? (a state type; without it the run stays SCHEDULED)}. Not counted.
func (s *Server) ctlCreateRun(body []byte) response {
	var req struct {
		Name         string   `json:"name"`
		DeploymentID string   `json:"deployment_id"`
		Tags         []string `json:"tags"`
		State        string   `json:"state"`
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return detailResp(400, "bad run: "+err.Error())
	}
	if req.State != "" && !validStates[req.State] {
		return detailResp(400, "bad run: unknown state type "+req.State)
	}
	if req.DeploymentID == "" {
		req.DeploymentID = demoDeploymentID
	}
	now := s.now()
	c := createReq{tags: req.Tags}
	if req.Name != "" {
		c.name = &req.Name
	}
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	d := st.deployments[strings.ToLower(req.DeploymentID)]
	if d == nil {
		return detailResp(400, "bad run: no deployment "+req.DeploymentID)
	}
	run := newRun(d, &c, prepared{params: emptyObject}, now, nil)
	if req.State != "" {
		run.manual = &manualState{typ: req.State, name: stateNames[req.State], at: now}
	}
	st.insertRun(run)
	return runResp(201, runView{run, run.stateAt(now)})
}

// ctlRunState puts a run in a state at once, without orchestration rules and
// without counting: {"type", "name"?, "message"?}.
func (s *Server) ctlRunState(rawID string, body []byte) response {
	var req struct {
		Type    string `json:"type"`
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return detailResp(400, "bad state: "+err.Error())
	}
	if !validStates[req.Type] {
		return detailResp(400, "bad state: unknown state type "+req.Type)
	}
	if req.Name == "" {
		req.Name = stateNames[req.Type]
	}
	id := strings.ToLower(rawID)
	now := s.now()
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.runByID[id]
	if r == nil {
		return detailResp(404, "Flow run not found")
	}
	r.setManual(&manualState{typ: req.Type, name: req.Name, message: req.Message, at: now}, now)
	return runResp(200, runView{r, r.stateAt(now)})
}

// SetConfig merges a JSON object into the config (as POST /_fake/config).
func (s *Server) SetConfig(raw []byte) (*Config, error) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	n, err := s.cfg.Load().merge(raw)
	if err != nil {
		return nil, err
	}
	s.cfg.Store(n)
	s.limiter.wake(n)
	return n, nil
}

func (s *Server) ctlConfig(body []byte) response {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	n, err := s.SetConfig(body)
	if err != nil {
		return detailResp(400, "bad config: "+err.Error())
	}
	return jsonResp(200, n)
}

// Reset clears runs, task runs, stats, extra deployments, CSRF tokens and the
// clock offset, and restores the default config.
func (s *Server) Reset() {
	s.cfgMu.Lock()
	cfg := defaultConfig()
	s.cfg.Store(cfg)
	s.limiter.wake(cfg)
	s.cfgMu.Unlock()
	s.offsetNs.Store(0)
	s.store.mu.Lock()
	s.store.reset()
	s.store.mu.Unlock()
	s.stats.reset(s.now())
	s.limiter.resetPeaks()
}

// Stats returns the /_fake/stats document.
func (s *Server) Stats() statsJSON {
	out := s.stats.snapshot()
	out.PeakServed, out.PeakQueue = s.limiter.peaks()
	s.store.mu.Lock()
	out.Runs = len(s.store.runs)
	s.store.mu.Unlock()
	return out
}

type deploymentReq struct {
	FlowName      string                     `json:"flow_name"`
	Name          string                     `json:"name"`
	ID            string                     `json:"id"`
	FlowID        string                     `json:"flow_id"`
	Tags          []string                   `json:"tags"`
	Required      []string                   `json:"required"`
	Properties    map[string]json.RawMessage `json:"properties"`
	Enforce       bool                       `json:"enforce_parameter_schema"`
	Parameters    map[string]json.RawMessage `json:"parameters"`
	WorkQueueName string                     `json:"work_queue_name"`
	// Edges (edges.go): a deployment concurrency limit, and a deployment without a work pool.
	ConcurrencyLimit int  `json:"concurrency_limit"`
	NoWorkPool       bool `json:"no_work_pool"`
}

func (s *Server) ctlDeployment(body []byte) response {
	var req deploymentReq
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return detailResp(400, "bad deployment: "+err.Error())
	}
	if req.FlowName == "" || req.Name == "" {
		return detailResp(400, "bad deployment: flow_name and name are required")
	}
	if req.ID != "" && !isUUID(req.ID) || req.FlowID != "" && !isUUID(req.FlowID) {
		return detailResp(400, "bad deployment: id and flow_id must be UUIDs")
	}
	d := &deployment{ID: req.ID, Name: req.Name, FlowName: req.FlowName, FlowID: req.FlowID,
		Tags: req.Tags, WorkQueueName: req.WorkQueueName, Required: req.Required,
		Enforce: req.Enforce, Defaults: req.Parameters, PropTypes: map[string]string{},
		ConcurrencyLimit: req.ConcurrencyLimit, NoWorkPool: req.NoWorkPool}
	if req.ConcurrencyLimit < 0 {
		return detailResp(400, "bad deployment: concurrency_limit must be >= 0")
	}
	if d.ID == "" {
		d.ID = newUUID()
	}
	if d.Tags == nil {
		d.Tags = []string{}
	}
	if d.WorkQueueName == "" {
		d.WorkQueueName = "default"
	}
	for name, raw := range req.Properties {
		var p struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return detailResp(400, "bad deployment: property "+name+" must be a JSON schema object")
		}
		d.PropTypes[name] = p.Type
	}
	s.store.mu.Lock()
	s.store.putDeployment(d, req.Properties)
	s.store.mu.Unlock()
	return response{status: 201, body: d.JSON}
}
