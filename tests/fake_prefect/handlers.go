package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Handlers for health, CSRF, deployments and flow-run creation and reads.

var (
	bodyTrue    = []byte("true")
	bodyReady   = []byte(`{"message":"OK"}`)
	bodyVersion = []byte(`"3.8.3"`)
)

func hHealth(*Server, *http.Request, []string, []byte) response {
	return response{status: 200, body: bodyTrue}
}

func hReady(*Server, *http.Request, []string, []byte) response {
	return response{status: 200, body: bodyReady}
}

func hVersion(*Server, *http.Request, []string, []byte) response {
	return response{status: 200, body: bodyVersion}
}

// --- CSRF ---

func hCSRF(s *Server, r *http.Request, _ []string, _ []byte) response {
	if !s.cfg.Load().CSRFEnabled {
		return detailResp(422, "CSRF protection is disabled.")
	}
	client := r.URL.Query().Get("client")
	if client == "" {
		return resp422(valErr{Loc: []any{"query", "client"}, Msg: "Field required", Type: "missing"})
	}
	var b [32]byte
	rand.Read(b[:])
	tok := csrfToken{token: hex.EncodeToString(b[:]), expires: s.now().Add(time.Hour)}
	s.store.mu.Lock()
	s.store.csrf[client] = tok // a new token replaces the client's old one
	s.store.mu.Unlock()
	return jsonResp(200, map[string]string{"token": tok.token, "client": client, "expiration": ts(tok.expires)})
}

func (s *Server) csrfValid(r *http.Request) bool {
	tok, client := r.Header.Get("Prefect-Csrf-Token"), r.Header.Get("Prefect-Csrf-Client")
	if tok == "" || client == "" {
		return false
	}
	now := s.now()
	s.store.mu.Lock()
	t, ok := s.store.csrf[client]
	s.store.mu.Unlock()
	return ok && t.token == tok && now.Before(t.expires)
}

// --- deployments ---

// pathUUID validates and normalises an id taken from the path. Prefect's
// routes declare the id as "/{id:uuid}" (api/flow_runs.py, api/task_runs.py,
// api/deployments.py): a path that is not a UUID matches no route, and
// Starlette answers 404 {"detail": "Not Found"}, not a 422.
func pathUUID(raw string) (string, *response) {
	if !isUUID(raw) {
		r := detailResp(404, "Not Found")
		return "", &r
	}
	id := strings.ToLower(raw)
	if len(id) == 32 {
		id = id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32]
	}
	return id, nil
}

var respDeploymentNotFound = detailResp(404, "Deployment not found")

func hReadDeploymentByName(s *Server, _ *http.Request, args []string, _ []byte) response {
	s.store.mu.Lock()
	d := s.store.depByName[args[0]+"\x00"+args[1]]
	s.store.mu.Unlock()
	if d == nil {
		return respDeploymentNotFound
	}
	return response{status: 200, body: d.JSON}
}

func hReadDeployment(s *Server, _ *http.Request, args []string, _ []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	s.store.mu.Lock()
	d := s.store.deployments[id]
	s.store.mu.Unlock()
	if d == nil {
		return respDeploymentNotFound
	}
	return response{status: 200, body: d.JSON}
}

// --- creating flow runs ---

var emptyObject = json.RawMessage("{}")

func newRun(d *deployment, c *createReq, p prepared, now time.Time, sc *Schedule) *flowRun {
	r := &flowRun{
		id: newUUID(), flowID: d.FlowID, deployID: d.ID, params: p.params,
		idemKey: c.idemKey, parentTaskRunID: c.parentTaskRunID, workQueue: d.WorkQueueName,
		jobVars: c.jobVars, labels: c.labels, created: now, createdStr: ts(now),
	}
	if c.name != nil {
		r.name = *c.name
	} else {
		r.name = runName()
	}
	if c.workQueue != nil {
		r.workQueue = *c.workQueue
	}
	if r.jobVars == nil {
		r.jobVars = emptyObject
	}
	if r.labels == nil {
		r.labels = emptyObject
	}
	r.tags = d.Tags
	if len(c.tags) > 0 {
		r.tags = slices.Clone(d.Tags)
		for _, t := range c.tags {
			if !slices.Contains(r.tags, t) {
				r.tags = append(r.tags, t)
			}
		}
	}
	r.applySchedule(sc, p.ov)
	return r
}

func hCreateFlowRun(s *Server, _ *http.Request, args []string, body []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	c, errs := parseCreate(body, []any{"body"}, false)
	if errs != nil {
		return resp422(errs...)
	}
	now := s.now()
	sc := s.cfg.Load().RunSchedule
	st := s.store
	st.mu.Lock()
	d := st.deployments[id]
	if d == nil {
		st.mu.Unlock()
		return respDeploymentNotFound
	}
	if d.NoWorkPool && c.workQueue != nil && *c.workQueue != "" {
		st.mu.Unlock()
		return singleWorkQueueError(*c.workQueue, d.ID)
	}
	p, msg, bad := prepareParams(d, &c)
	if bad != nil || msg != "" {
		st.mu.Unlock()
		if bad != nil {
			return *bad
		}
		return detailResp(409, "Error creating flow run: "+msg)
	}
	// models/flow_runs.py create_flow_run: "if not flow_run.idempotency_key"
	// inserts directly, so an empty key is no key for deduplication; the
	// unique index on (flow_id, idempotency_key) then refuses a second ""
	// in the same flow, and api/server.py integrity_exception_handler
	// answers 409.
	if c.idemKey != nil && *c.idemKey == "" {
		if st.idem[d.FlowID+"\x00"] != nil {
			st.mu.Unlock()
			return detailResp(409, "Data integrity conflict. This usually means a unique or foreign key "+
				"constraint was violated. See server logs for details.")
		}
	} else if c.idemKey != nil {
		if ex := st.idem[d.FlowID+"\x00"+*c.idemKey]; ex != nil {
			v := runView{ex, ex.stateAt(now)}
			st.mu.Unlock()
			s.stats.addCreated(0, 1, 0, now)
			return runResp(200, v)
		}
	}
	if roll(s.cfg.Load().BulkItemErrorRate) {
		// The same contention that fails a run of a bulk create fails a single create's
		// insert; Prefect answers a locked database with 503.
		st.mu.Unlock()
		s.stats.add(func(s *stats) { s.faults.Locked++ })
		return response{status: 503, body: []byte(`{"exception_message":"Service Unavailable"}`)}
	}
	run := newRun(d, &c, p, now, sc)
	st.shapeRun(run, d, sc, p.ov, s.stats)
	st.insertRun(run)
	v := runView{run, run.stateAt(now)}
	st.mu.Unlock()
	noKey := int64(0)
	if c.idemKey == nil {
		noKey = 1
	}
	s.stats.addCreated(1, 0, noKey, now)
	return runResp(201, v)
}

type bulkResult struct {
	FlowRunID *string `json:"flow_run_id"`
	Status    string  `json:"status"`
	Error     *string `json:"error"`
}

const maxBulk = 100

func hCreateFlowRunBulk(s *Server, _ *http.Request, args []string, body []byte) response {
	if !s.cfg.Load().BulkEnabled {
		return detailResp(404, "Not Found")
	}
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	if !json.Valid(body) {
		return resp422(valErr{Loc: []any{"body", 0}, Msg: "JSON decode error", Type: "json_invalid"})
	}
	elems, ok := scanArray(body)
	if !ok {
		return resp422(valErr{Loc: []any{"body"}, Msg: "Input should be a valid list", Type: "list_type"})
	}
	reqs := make([]createReq, len(elems))
	var errs []valErr
	for i, e := range elems {
		var es []valErr
		reqs[i], es = parseCreate(e, []any{"body", i}, true)
		errs = append(errs, es...)
	}
	if errs != nil {
		return resp422(errs...)
	}
	if len(elems) > maxBulk {
		return detailResp(400, "Cannot create more than 100 flow runs in a single request")
	}
	now := s.now()
	cfg := s.cfg.Load()
	sc := cfg.RunSchedule
	results := make([]bulkResult, len(reqs))
	var created, existing, noKey, contended int64
	st := s.store
	st.mu.Lock()
	d := st.deployments[id]
	if d == nil {
		st.mu.Unlock()
		return respDeploymentNotFound
	}
	for i := range reqs {
		c := &reqs[i]
		// Prefect's per-run verdicts, word for word (deployments.py,
		// bulk_create_flow_runs_from_deployment). The merged parameters are not
		// size-checked there (only each request body's own, a whole-request 422).
		if d.NoWorkPool && c.workQueue != nil && *c.workQueue != "" {
			msg := bulkWorkQueueError(*c.workQueue)
			results[i] = bulkResult{Status: "FAILED", Error: &msg}
			continue
		}
		p, msg, _ := prepareParams(d, c)
		if msg != "" {
			msg = "Parameter validation failed: " + msg
			results[i] = bulkResult{Status: "FAILED", Error: &msg}
			continue
		}
		if c.idemKey != nil {
			if ex := st.idem[d.FlowID+"\x00"+*c.idemKey]; ex != nil {
				results[i] = bulkResult{FlowRunID: &ex.id, Status: "CREATED"}
				existing++
				continue
			}
		}
		if roll(cfg.BulkItemErrorRate) {
			// The run's insert lost to another writer: Prefect reports str(exc) for it and
			// goes on with the others; nothing was created for it.
			e := cfg.BulkItemError
			results[i] = bulkResult{Status: "FAILED", Error: &e}
			contended++
			continue
		}
		run := newRun(d, c, p, now, sc)
		st.shapeRun(run, d, sc, p.ov, s.stats)
		st.insertRun(run)
		results[i] = bulkResult{FlowRunID: &run.id, Status: "CREATED"}
		created++
		if c.idemKey == nil {
			noKey++
		}
	}
	st.mu.Unlock()
	s.stats.addCreated(created, existing, noKey, now)
	if contended > 0 {
		s.stats.add(func(s *stats) { s.faults.BulkItem += contended })
	}
	return jsonResp(200, map[string]any{"results": results})
}

// --- reading flow runs ---

var respFlowRunNotFound = detailResp(404, "Flow run not found")

func hReadFlowRun(s *Server, _ *http.Request, args []string, _ []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	now := s.now()
	s.store.mu.Lock()
	r := s.store.runByID[id]
	if r == nil {
		s.store.mu.Unlock()
		return respFlowRunNotFound
	}
	v := runView{r, r.stateAt(now)}
	s.store.mu.Unlock()
	return runResp(200, v)
}
