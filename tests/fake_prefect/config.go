package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Schedule drives the lazily computed life of a flow run (see runs.go).
// A nil schedule means runs stay SCHEDULED forever.
type Schedule struct {
	ScheduledMs int64   `json:"scheduled_ms"`
	PendingMs   int64   `json:"pending_ms"`
	RunningMs   int64   `json:"running_ms"`
	FailRate    float64 `json:"fail_rate"`
	CrashRate   float64 `json:"crash_rate"`
	CancelRate  float64 `json:"cancel_rate"`
	// Late names the SCHEDULED phase "Late" (as Prefect does for runs past
	// their start time). ScheduledName overrides the name outright, e.g.
	// "AwaitingConcurrencySlot".
	Late          bool   `json:"late"`
	ScheduledName string `json:"scheduled_name,omitempty"`

	// Edges (edges.go). NeverStartRate: the share of runs that never start, staying in
	// NeverStartState ("SCHEDULED", the default, or "PENDING"). StartRate: workers start at
	// most this many runs a second (0 = no limit). BurstCrashStarts: a run whose start has
	// this many starts or more in the second before it crashes CrashAfterMs after starting.
	NeverStartRate   float64 `json:"never_start_rate,omitempty"`
	NeverStartState  string  `json:"never_start_state,omitempty"`
	StartRate        float64 `json:"start_rate,omitempty"`
	BurstCrashStarts int     `json:"burst_crash_starts,omitempty"`
	CrashAfterMs     int64   `json:"crash_after_ms,omitempty"`
}

// Config is the whole run-time configuration. It is immutable once
// published: updates copy it, merge, validate and swap the pointer.
type Config struct {
	// Protocol behaviour.
	Auth                 string `json:"auth"`
	CSRFEnabled          bool   `json:"csrf_enabled"`
	BulkEnabled          bool   `json:"bulk_enabled"`
	BulkSetStateEnabled  bool   `json:"bulk_set_state_enabled"`
	CancelDelayMs        int64  `json:"cancel_delay_ms"`
	MaxBodyBytes         int64  `json:"max_body_bytes"`
	RequireContentLength bool   `json:"require_content_length"`
	// APIRoot, when set (e.g. "/api/accounts/a/workspaces/w", Prefect Cloud's form), is the only
	// API root served; any other path is 404, so a test sees a client that loses the prefix.
	APIRoot string `json:"api_root"`

	RunSchedule *Schedule `json:"run_schedule"`

	// Fault injection.
	FaultPaths       []string `json:"fault_paths"`
	LatencyMs        int64    `json:"latency_ms"`
	LatencyJitterMs  int64    `json:"latency_jitter_ms"`
	ErrorRate        float64  `json:"error_rate"`
	ErrorStatus      int      `json:"error_status"`
	Rate429          float64  `json:"rate_429"`
	RetryAfterS      int      `json:"retry_after_s"`
	RetryAfterDate   bool     `json:"retry_after_date"`
	DropRate         float64  `json:"drop_rate"`
	LostResponseRate float64  `json:"lost_response_rate"`
	Down             bool     `json:"down"`

	// Capacity model.
	Capacity               int64   `json:"capacity"`
	ServiceTimeMs          float64 `json:"service_time_ms"`
	ServiceTimePerQueuedMs float64 `json:"service_time_per_queued_ms"`
	QueueLimit             int64   `json:"queue_limit"`
	Overflow               string  `json:"overflow"`
	StallMs                int64   `json:"stall_ms"`

	// SQLite's single writer: writes hold one lock for this long; a write that
	// finds it held waits up to write_lock_wait_ms for it (SQLite's busy
	// timeout; 0 = not at all), then gets 503 ("database is locked").
	WriteLockMs     int64 `json:"write_lock_ms"`
	WriteLockWaitMs int64 `json:"write_lock_wait_ms"`

	// Database contention: each run of a bulk create fails with this rate,
	// answering FAILED with bulk_item_error (by default the text a locked
	// SQLite insert gives, statement and parameters included); a single create
	// that would insert meets the same contention as a 503 (counted as locked).
	BulkItemErrorRate float64 `json:"bulk_item_error_rate"`
	BulkItemError     string  `json:"bulk_item_error"`
}

// sqliteLockedError is str() of the exception a locked SQLite insert raises in Prefect's bulk
// create: SQLAlchemy's OperationalError with the statement and its parameters.
const sqliteLockedError = "(sqlite3.OperationalError) database is locked\n" +
	"[SQL: INSERT INTO flow_run (flow_id, deployment_id, work_queue_name, parameters, " +
	"idempotency_key, tags, state_type, state_name, id, created, updated) VALUES (:flow_id, " +
	":deployment_id, :work_queue_name, :parameters, :idempotency_key, :tags, :state_type, " +
	":state_name, :id, :created, :updated)]\n" +
	"[parameters: {'flow_id': '...', 'parameters': '{}', 'idempotency_key': '...'}]\n" +
	"(Background on this error at: https://sqlalche.me/e/20/e3q8)"

func defaultConfig() *Config {
	return &Config{
		BulkEnabled:         true,
		BulkSetStateEnabled: true,
		ErrorStatus:         503,
		RetryAfterS:         1,
		Overflow:            "503",
		StallMs:             30000,

		BulkItemError: sqliteLockedError,
	}
}

func (c *Config) clone() *Config {
	n := *c
	if c.RunSchedule != nil {
		s := *c.RunSchedule
		n.RunSchedule = &s
	}
	n.FaultPaths = slices.Clone(c.FaultPaths)
	return &n
}

// faultsActive reports whether any per-request fault or delay is configured,
// so the hot path can skip the fault code entirely.
func (c *Config) faultsActive() bool {
	return c.LatencyMs > 0 || c.LatencyJitterMs > 0 || c.ErrorRate > 0 ||
		c.Rate429 > 0 || c.DropRate > 0 || c.LostResponseRate > 0 ||
		c.Capacity > 0 || c.ServiceTimeMs > 0 || c.ServiceTimePerQueuedMs > 0 ||
		c.WriteLockMs > 0
}

// merge returns a new config: the receiver with the keys of raw (a JSON
// object) applied. Unknown keys are an error so that typos do not silently
// disable a fault.
func (c *Config) merge(raw []byte) (*Config, error) {
	n := c.clone()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(n); err != nil {
		return nil, err
	}
	if err := n.validate(); err != nil {
		return nil, err
	}
	return n, nil
}

func (c *Config) validate() error {
	rates := map[string]float64{
		"error_rate": c.ErrorRate, "rate_429": c.Rate429, "drop_rate": c.DropRate,
		"lost_response_rate": c.LostResponseRate, "bulk_item_error_rate": c.BulkItemErrorRate,
	}
	if s := c.RunSchedule; s != nil {
		rates["run_schedule.fail_rate"] = s.FailRate
		rates["run_schedule.crash_rate"] = s.CrashRate
		rates["run_schedule.cancel_rate"] = s.CancelRate
		if s.ScheduledMs < 0 || s.PendingMs < 0 || s.RunningMs < 0 {
			return fmt.Errorf("run_schedule durations must be >= 0")
		}
		if s.FailRate+s.CrashRate+s.CancelRate > 1.0000001 {
			return fmt.Errorf("run_schedule: crash_rate + fail_rate + cancel_rate must be <= 1")
		}
		if s.NeverStartRate < 0 || s.NeverStartRate > 1 || s.StartRate < 0 || s.BurstCrashStarts < 0 ||
			s.CrashAfterMs < 0 {
			return fmt.Errorf("run_schedule: never_start_rate must be within 0..1; start_rate, " +
				"burst_crash_starts and crash_after_ms >= 0")
		}
		if s.NeverStartState != "" && s.NeverStartState != stScheduled && s.NeverStartState != stPending {
			return fmt.Errorf("run_schedule: never_start_state must be SCHEDULED or PENDING")
		}
	}
	for k, v := range rates {
		if v < 0 || v > 1 {
			return fmt.Errorf("%s must be within 0..1, got %v", k, v)
		}
	}
	if c.ErrorStatus < 100 || c.ErrorStatus > 599 {
		return fmt.Errorf("error_status must be an HTTP status, got %d", c.ErrorStatus)
	}
	if c.Overflow != "503" && c.Overflow != "stall" {
		return fmt.Errorf(`overflow must be "503" or "stall", got %q`, c.Overflow)
	}
	if c.Capacity < 0 || c.QueueLimit < 0 || c.LatencyMs < 0 || c.LatencyJitterMs < 0 ||
		c.StallMs < 0 || c.CancelDelayMs < 0 || c.RetryAfterS < 0 || c.MaxBodyBytes < 0 ||
		c.ServiceTimeMs < 0 || c.ServiceTimePerQueuedMs < 0 || c.WriteLockMs < 0 ||
		c.WriteLockWaitMs < 0 {
		return fmt.Errorf("numeric settings must be >= 0")
	}
	return nil
}
