package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the fake Prefect API plus its /_fake control endpoints.
type Server struct {
	cfg     atomic.Pointer[Config]
	cfgMu   sync.Mutex // serialises config updates
	store   *store
	stats   *stats
	limiter *limiter
	// Held by a write while write_lock_ms is set (the SQLite model): a one-slot channel, so
	// that a write can wait for it with a deadline (SQLite's busy timeout).
	writeLock chan struct{}

	// Clock: nowFn (settable by tests) plus an offset moved by /_fake/clock.
	nowFn    func() time.Time
	offsetNs atomic.Int64
}

func NewServer() *Server {
	s := &Server{store: newStore(), limiter: &limiter{}, nowFn: time.Now, writeLock: make(chan struct{}, 1)}
	s.cfg.Store(defaultConfig())
	s.stats = newStats(s.now())
	return s
}

func (s *Server) now() time.Time { return s.nowFn().Add(time.Duration(s.offsetNs.Load())) }

func (s *Server) cfgSnapshot() *Config { return s.cfg.Load() }

// response is what an API handler produces; the dispatcher writes it (or,
// for a lost response, drops the connection instead).
type response struct {
	status     int
	body       []byte
	retryAfter string
	pooled     *[]byte // body's buffer, returned to bufPool once written
}

type handlerFunc func(s *Server, r *http.Request, args []string, body []byte) response

type route struct {
	label   string
	method  string
	h       handlerFunc
	noAuth  bool // health, ready, csrf-token
	noFault bool // health, ready, admin/version, csrf-token
	lossy   bool // eligible for lost_response_rate
}

var (
	rtHealth     = &route{label: "health", method: "GET", h: hHealth, noAuth: true, noFault: true}
	rtReady      = &route{label: "ready", method: "GET", h: hReady, noAuth: true, noFault: true}
	rtVersion    = &route{label: "version", method: "GET", h: hVersion, noFault: true}
	rtCSRF       = &route{label: "csrf", method: "GET", h: hCSRF, noAuth: true, noFault: true}
	rtDepByName  = &route{label: "read_deployment", method: "GET", h: hReadDeploymentByName}
	rtDep        = &route{label: "read_deployment", method: "GET", h: hReadDeployment}
	rtCreate     = &route{label: "create_flow_run", method: "POST", h: hCreateFlowRun, lossy: true}
	rtBulk       = &route{label: "create_flow_run_bulk", method: "POST", h: hCreateFlowRunBulk, lossy: true}
	rtFRFilter   = &route{label: "flow_runs_filter", method: "POST", h: hFlowRunsFilter}
	rtReadFR     = &route{label: "read_flow_run", method: "GET", h: hReadFlowRun}
	rtDeleteFR   = &route{label: "delete_flow_run", method: "DELETE", h: hDeleteFlowRun}
	rtSetState   = &route{label: "set_state", method: "POST", h: hSetState}
	rtBulkState  = &route{label: "bulk_set_state", method: "POST", h: hBulkSetState}
	rtTaskCreate = &route{label: "task_runs", method: "POST", h: hCreateTaskRun, lossy: true}
	rtTRFilter   = &route{label: "task_runs_filter", method: "POST", h: hTaskRunsFilter}
	rtReadTR     = &route{label: "read_task_run", method: "GET", h: hReadTaskRun}
)

// apiPrefix strips the API root: "/api" (self-hosted) or
// "/api/accounts/{a}/workspaces/{w}" (Prefect Cloud style).
func apiPrefix(p string) (string, bool) {
	if p != "/api" && !strings.HasPrefix(p, "/api/") {
		return "", false
	}
	rest := p[len("/api"):]
	if strings.HasPrefix(rest, "/accounts/") {
		parts := strings.SplitN(rest, "/", 6) // "", accounts, a, workspaces, w, rest
		if len(parts) >= 5 && parts[3] == "workspaces" {
			if len(parts) == 6 {
				return "/" + parts[5], true
			}
			return "", true
		}
	}
	return rest, true
}

// matchRoute maps an (escaped) path below the API root to a route. It
// returns the route, the percent-decoded path arguments, or an error status
// (404 unknown path, 405 wrong method).
func matchRoute(method, escPath string) (*route, []string, int) {
	escPath = strings.Trim(escPath, "/")
	segs := strings.Split(escPath, "/")
	var rt *route
	var args []string
	n := len(segs)
	switch segs[0] {
	case "health":
		if n == 1 {
			rt = rtHealth
		}
	case "ready":
		if n == 1 {
			rt = rtReady
		}
	case "admin":
		if n == 2 && segs[1] == "version" {
			rt = rtVersion
		}
	case "csrf-token":
		if n == 1 {
			rt = rtCSRF
		}
	case "deployments":
		switch {
		case n == 4 && segs[1] == "name":
			rt, args = rtDepByName, segs[2:4]
		case n == 2:
			rt, args = rtDep, segs[1:2]
		case n == 3 && segs[2] == "create_flow_run":
			rt, args = rtCreate, segs[1:2]
		case n == 4 && segs[2] == "create_flow_run" && segs[3] == "bulk":
			rt, args = rtBulk, segs[1:2]
		}
	case "flow_runs":
		switch {
		case n == 2 && segs[1] == "filter":
			rt = rtFRFilter
		case n == 2 && segs[1] == "bulk_set_state" && method == "POST":
			rt = rtBulkState
		case n == 2 && method == "DELETE":
			rt, args = rtDeleteFR, segs[1:2]
		case n == 2:
			rt, args = rtReadFR, segs[1:2]
		case n == 3 && segs[2] == "set_state":
			rt, args = rtSetState, segs[1:2]
		}
	case "task_runs":
		switch {
		case n == 1:
			rt = rtTaskCreate
		case n == 2 && segs[1] == "filter":
			rt = rtTRFilter
		case n == 2:
			rt, args = rtReadTR, segs[1:2]
		}
	}
	if rt == nil {
		return nil, nil, 404
	}
	if rt.method != method {
		return nil, nil, 405
	}
	for i, a := range args {
		if strings.IndexByte(a, '%') >= 0 {
			if u, err := url.PathUnescape(a); err == nil {
				args[i] = u
			}
		}
	}
	return rt, args, 0
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/_fake/") {
		s.serveControl(w, r)
		return
	}
	esc := r.URL.EscapedPath()
	rest, ok := apiPrefix(esc)
	if root := s.cfg.Load().APIRoot; ok && root != "" && esc != root && !strings.HasPrefix(esc, root+"/") {
		// Only the configured root answers: a client that drops part of it gets 404, counted
		// as "other" like any unknown path.
		s.serveAPI(w, r, "/\x00outside-api-root")
		return
	}
	if !ok {
		writeResp(w, response{status: 404, body: detailBody("Not Found")})
		return
	}
	s.serveAPI(w, r, rest)
}

var bodyCSRFInvalid = detailBody("Invalid CSRF token or client identifier.")

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, rest string) {
	cfg := s.cfg.Load()
	rt, args, errStatus := matchRoute(r.Method, rest)
	label := "other"
	if rt != nil {
		label = rt.label
	}
	s.stats.begin(label, s.now())
	outcome := 0
	defer func() { s.stats.end(outcome, s.now()) }()

	if cfg.Down {
		outcome = writeResp(w, response{status: 503, body: detailBody("Service Unavailable")})
		return
	}
	if rt == nil {
		msg := "Not Found"
		if errStatus == 405 {
			msg = "Method Not Allowed"
		}
		outcome = writeResp(w, response{status: errStatus, body: detailBody(msg)})
		return
	}
	faulty := !rt.noFault && cfg.faultsActive() && faultApplies(cfg, r.URL.Path)
	if faulty {
		release, done, out := s.preFaults(w, r, cfg)
		if done {
			outcome = out
			return
		}
		if release != nil {
			defer release()
		}
	}
	if !rt.noAuth && cfg.Auth != "" && r.Header.Get("Authorization") != cfg.Auth {
		outcome = writeResp(w, response{status: 401, body: detailBody("Unauthorized")})
		return
	}
	if cfg.CSRFEnabled && (r.Method == "POST" || r.Method == "PATCH" || r.Method == "DELETE") && !s.csrfValid(r) {
		outcome = writeResp(w, response{status: 403, body: bodyCSRFInvalid})
		return
	}
	var body []byte
	if r.Method == "POST" {
		if cfg.RequireContentLength && r.ContentLength < 0 {
			outcome = writeResp(w, response{status: 411, body: detailBody("Length Required")})
			return
		}
		if cfg.MaxBodyBytes > 0 && r.ContentLength > cfg.MaxBodyBytes {
			outcome = writeResp(w, response{status: 413, body: detailBody("Request Entity Too Large")})
			return
		}
		var err error
		if body, err = readBody(r, cfg.MaxBodyBytes); err != nil {
			if err == errTooLarge {
				outcome = writeResp(w, response{status: 413, body: detailBody("Request Entity Too Large")})
			} else {
				outcome = outGone
			}
			return
		}
	}
	resp := mangle2xx(rt, rt.h(s, r, args, body))
	if faulty && rt.lossy && resp.status < 300 && roll(cfg.LostResponseRate) {
		if resp.pooled != nil {
			putBuf(resp.pooled)
		}
		s.stats.add(func(s *stats) { s.faults.LostResponse++ })
		outcome = outLost
		dropConn(w)
		return
	}
	outcome = writeResp(w, resp)
}

type tooLarge struct{}

func (tooLarge) Error() string { return "request body too large" }

var errTooLarge error = tooLarge{}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > 0 && r.ContentLength <= 64<<20 {
		b := make([]byte, r.ContentLength)
		_, err := io.ReadFull(r.Body, b)
		return b, err
	}
	var rd io.Reader = r.Body
	if limit > 0 {
		rd = io.LimitReader(r.Body, limit+1)
	}
	b, err := io.ReadAll(rd)
	if err == nil && limit > 0 && int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, err
}

var jsonCT = []string{"application/json"}

// writeResp writes a JSON response and returns its status for the stats.
func writeResp(w http.ResponseWriter, resp response) int {
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(resp.body))}
	if resp.retryAfter != "" {
		h["Retry-After"] = []string{resp.retryAfter}
	}
	w.WriteHeader(resp.status)
	w.Write(resp.body)
	if resp.pooled != nil {
		putBuf(resp.pooled)
	}
	return resp.status
}

func detailBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"detail": msg})
	return b
}

func detailResp(status int, msg string) response {
	return response{status: status, body: detailBody(msg)}
}

func jsonResp(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		return detailResp(500, "fake-prefect: cannot encode response: "+err.Error())
	}
	return response{status: status, body: b}
}
