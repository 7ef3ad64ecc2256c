package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// valErr is one entry of a FastAPI/pydantic 422 "detail" list.
type valErr struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// Prefect answers a request validation error with its own handler
// (src/prefect/server/api/server.py validation_exception_handler), not
// FastAPI's {"detail": [...]}: {"exception_message": "Invalid request
// received.", "exception_detail": [...], "request_body": ...}. The fake
// leaves request_body null.
func resp422(errs ...valErr) response {
	return jsonResp(422, map[string]any{"exception_message": "Invalid request received.",
		"exception_detail": errs, "request_body": nil})
}

func loc(prefix []any, more ...any) []any {
	l := make([]any, 0, len(prefix)+len(more))
	return append(append(l, prefix...), more...)
}

// decodeObject validates raw as JSON and parses it as an object into its
// top-level members. A syntax error gives pydantic's json_invalid; another
// JSON value gives model_attributes_type. A nested value (a field of an
// already validated body) skips the validation and gives dict_type.
func decodeObject(raw []byte, at []any, nested bool) (obj, []valErr) {
	if !nested && !json.Valid(raw) {
		return nil, []valErr{{Loc: loc(at, 0), Msg: "JSON decode error", Type: "json_invalid"}}
	}
	return objectAt(raw, at, nested)
}

// objectAt parses already validated JSON as an object.
func objectAt(raw []byte, at []any, nested bool) (obj, []valErr) {
	if o, ok := scanObject(raw); ok {
		return o, nil
	}
	if nested {
		return nil, []valErr{{Loc: at, Msg: "Input should be a valid dictionary", Type: "dict_type"}}
	}
	return nil, []valErr{{Loc: at, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"}}
}

// checkKeys reports every key of m not in allowed as extra_forbidden.
func checkKeys(m obj, allowed map[string]bool, at []any) []valErr {
	var errs []valErr
	for _, mb := range m {
		if !allowed[string(mb.key)] {
			errs = append(errs, valErr{Loc: loc(at, string(mb.key)), Msg: "Extra inputs are not permitted", Type: "extra_forbidden"})
		}
	}
	return errs
}

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// kind classifies a raw JSON value by its first byte.
func kind(raw json.RawMessage) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[', '"', 'n', 't', 'f':
			return c
		default:
			return '0'
		}
	}
	return 0
}

func isNull(raw json.RawMessage) bool { return raw == nil || kind(raw) == 'n' }

// Typed field readers: each returns ok=false with a pydantic-style error.

func optString(m obj, key string, at []any, errs *[]valErr) *string {
	raw, ok := m.get(key)
	if !ok || isNull(raw) {
		return nil
	}
	s, ok := jsonString(raw)
	if !ok {
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: "Input should be a valid string", Type: "string_type"})
		return nil
	}
	return &s
}

func optBool(m obj, key string, at []any, errs *[]valErr) *bool {
	raw, ok := m.get(key)
	if !ok || isNull(raw) {
		return nil
	}
	var b bool
	switch string(raw) {
	case "true":
		b = true
	case "false":
	default:
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: "Input should be a valid boolean", Type: "bool_type"})
		return nil
	}
	return &b
}

func optObject(m obj, key string, at []any, errs *[]valErr) json.RawMessage {
	raw, ok := m.get(key)
	if !ok || isNull(raw) {
		return nil
	}
	if kind(raw) != '{' {
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: "Input should be a valid dictionary", Type: "dict_type"})
		return nil
	}
	return raw
}

func optStrings(m obj, key string, at []any, errs *[]valErr) []string {
	raw, ok := m.get(key)
	if !ok || isNull(raw) {
		return nil
	}
	elems, ok := scanArray(raw)
	if !ok {
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: "Input should be a valid list", Type: "list_type"})
		return nil
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		if out[i], ok = jsonString(e); !ok {
			*errs = append(*errs, valErr{Loc: loc(at, key, i), Msg: "Input should be a valid string", Type: "string_type"})
			return nil
		}
	}
	return out
}

func optUUID(m obj, key string, at []any, errs *[]valErr) *string {
	s := optString(m, key, at, errs)
	if s != nil && !isUUID(*s) {
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: "Input should be a valid UUID", Type: "uuid_parsing"})
		return nil
	}
	if s != nil {
		l := strings.ToLower(*s)
		if len(l) == 32 {
			l = l[0:8] + "-" + l[8:12] + "-" + l[12:16] + "-" + l[16:20] + "-" + l[20:32]
		}
		return &l
	}
	return nil
}

// anyList reads a filter member such as {"id": {"any_": [...]}}: the list
// under "any_" of the object m[field], whose keys must be in allowed.
func anyList(m obj, field string, allowed map[string]bool, at []any, errs *[]valErr) (list []string, present bool) {
	raw, ok := m.get(field)
	if !ok || isNull(raw) {
		return nil, false
	}
	inner, e := decodeObject(raw, loc(at, field), true)
	if e != nil {
		*errs = append(*errs, e...)
		return nil, false
	}
	if e := checkKeys(inner, allowed, loc(at, field)); e != nil {
		*errs = append(*errs, e...)
		return nil, false
	}
	l := optStrings(inner, "any_", loc(at, field), errs)
	if raw, has := inner.get("any_"); !has || isNull(raw) {
		return nil, false
	}
	return l, true
}

// notNull reports a JSON null given for a field whose pydantic type does not
// allow None: Prefect's schemas/actions.py declares DeploymentFlowRunCreate's
// parameters and context as Dict[str, Any], tags as List[str] and
// empirical_policy as FlowRunPolicy (default_factory, not Optional), so
// {"tags": null} is a 422, not "no tags".
func notNull(m obj, key, typ, msg string, at []any, errs *[]valErr) {
	if raw, ok := m.get(key); ok && kind(raw) == 'n' {
		*errs = append(*errs, valErr{Loc: loc(at, key), Msg: msg, Type: typ})
	}
}

func notNullFields(m obj, at []any, errs *[]valErr, fields ...string) {
	for _, f := range fields {
		switch f {
		case "tags":
			notNull(m, f, "list_type", "Input should be a valid list", at, errs)
		case "empirical_policy":
			notNull(m, f, "model_type", "Input should be a valid dictionary or instance of FlowRunPolicy", at, errs)
		default:
			notNull(m, f, "dict_type", "Input should be a valid dictionary", at, errs)
		}
	}
}

// Create-flow-run bodies.

var createKeys = setOf("state", "name", "parameters", "enforce_parameter_schema", "context", "tags",
	"idempotency_key", "labels", "parent_task_run_id", "work_queue_name", "job_variables",
	"empirical_policy", "infrastructure_document_id")

type createReq struct {
	name            *string
	params          json.RawMessage
	enforce         *bool
	tags            []string
	idemKey         *string
	labels          json.RawMessage
	jobVars         json.RawMessage
	parentTaskRunID *string
	workQueue       *string
}

// parseCreate parses one create body; validated says raw is an element of
// an already validated bulk body.
func parseCreate(raw []byte, at []any, validated bool) (createReq, []valErr) {
	var c createReq
	var m obj
	var errs []valErr
	if validated {
		m, errs = objectAt(raw, at, false)
	} else {
		m, errs = decodeObject(raw, at, false)
	}
	if errs != nil {
		return c, errs
	}
	if errs = checkKeys(m, createKeys, at); errs != nil {
		return c, errs
	}
	notNullFields(m, at, &errs, "parameters", "context", "tags", "empirical_policy")
	c.name = optString(m, "name", at, &errs)
	c.params = optObject(m, "parameters", at, &errs)
	c.enforce = optBool(m, "enforce_parameter_schema", at, &errs)
	c.tags = optStrings(m, "tags", at, &errs)
	c.idemKey = optString(m, "idempotency_key", at, &errs)
	c.labels = optObject(m, "labels", at, &errs)
	c.jobVars = optObject(m, "job_variables", at, &errs)
	c.parentTaskRunID = optUUID(m, "parent_task_run_id", at, &errs)
	c.workQueue = optString(m, "work_queue_name", at, &errs)
	optObject(m, "state", at, &errs)
	optObject(m, "context", at, &errs)
	optObject(m, "empirical_policy", at, &errs)
	optUUID(m, "infrastructure_document_id", at, &errs)
	if len(c.params) > maxParamBytes {
		errs = append(errs, valErr{Loc: loc(at, "parameters"),
			Msg: "Value error, Flow run parameters must be less than 512KiB when serialized.", Type: "value_error"})
	}
	return c, errs
}

const maxParamBytes = 512 * 1024

// prepared is a validated create request resolved against its deployment.
type prepared struct {
	params json.RawMessage
	ov     fakeOverrides
}

// prepareParams merges the deployment's default parameters under the body's,
// enforces the parameter schema, and extracts __fake_* overrides. The error
// string is Prefect's 409 message (without the "Error creating flow run: "
// prefix) and the response is a 422 for oversize parameters.
func prepareParams(d *deployment, c *createReq) (prepared, string, *response) {
	p := prepared{params: c.params, ov: fakeOverrides{scheduledMs: -1, pendingMs: -1, runningMs: -1}}
	enforce := d.Enforce
	if c.enforce != nil {
		enforce = *c.enforce
	}
	needSchema := enforce && (len(d.Required) > 0 || len(d.PropOrder) > 0)
	needFake := bytes.Contains(c.params, []byte(`"__fake_`))
	if len(d.Defaults) == 0 && !needSchema && !needFake {
		if p.params == nil {
			p.params = json.RawMessage("{}")
		}
		return p, "", nil
	}
	merged := make(map[string]json.RawMessage, len(d.Defaults)+8)
	for k, v := range d.Defaults {
		merged[k] = v
	}
	if c.params != nil {
		var body map[string]json.RawMessage
		json.Unmarshal(c.params, &body) // already checked to be an object
		for k, v := range body {
			merged[k] = v
		}
	}
	if len(d.Defaults) > 0 {
		p.params, _ = json.Marshal(merged)
		if len(p.params) > maxParamBytes {
			r := resp422(valErr{Loc: []any{"body", "parameters"},
				Msg: "Value error, Flow run parameters must be less than 512KiB when serialized.", Type: "value_error"})
			return p, "", &r
		}
	} else if p.params == nil {
		p.params = json.RawMessage("{}")
	}
	if needSchema {
		if msg := checkSchema(d, merged); msg != "" {
			return p, msg, nil
		}
	}
	if needFake {
		p.ov = parseOverrides(merged)
	}
	return p, "", nil
}

func checkSchema(d *deployment, params map[string]json.RawMessage) string {
	for _, req := range d.Required {
		if _, ok := params[req]; !ok {
			return fmt.Sprintf("Validation failed for field '%s'. Failure reason: '%s' is a required property", req, req)
		}
	}
	for _, name := range d.PropOrder {
		v, ok := params[name]
		if !ok {
			continue
		}
		typ := d.PropTypes[name]
		if !matchesType(v, typ) {
			return fmt.Sprintf("Validation failed for field '%s'. Failure reason: %s is not of type '%s'", name, pyRepr(v), typ)
		}
	}
	return ""
}

func matchesType(v json.RawMessage, typ string) bool {
	k := kind(v)
	switch typ {
	case "integer":
		if k != '0' {
			return false
		}
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		return err == nil && f == math.Trunc(f)
	case "number":
		return k == '0'
	case "string":
		return k == '"'
	case "boolean":
		return k == 't' || k == 'f'
	case "array":
		return k == '['
	case "object":
		return k == '{'
	case "null":
		return k == 'n'
	}
	return true // unknown or absent type: anything goes
}

// pyRepr renders a JSON value roughly as Python's repr would, as it appears
// in jsonschema messages.
func pyRepr(v json.RawMessage) string {
	switch kind(v) {
	case '"':
		var s string
		json.Unmarshal(v, &s)
		return "'" + s + "'"
	case 'n':
		return "None"
	case 't':
		return "True"
	case 'f':
		return "False"
	}
	return string(bytes.TrimSpace(v))
}

func parseOverrides(params map[string]json.RawMessage) fakeOverrides {
	ov := fakeOverrides{scheduledMs: -1, pendingMs: -1, runningMs: -1}
	if raw, ok := params["__fake_final"]; ok {
		var s string
		json.Unmarshal(raw, &s)
		s = strings.ToUpper(s)
		if s == stCompleted || s == stFailed || s == stCrashed || s == stCancelled {
			ov.final, ov.any = s, true
		}
	}
	num := func(key string, dst *int64) {
		if raw, ok := params[key]; ok {
			var f float64
			if json.Unmarshal(raw, &f) == nil && f >= 0 {
				*dst, ov.any = int64(f), true
			}
		}
	}
	if raw, ok := params["__fake_never_start"]; ok {
		var s string
		json.Unmarshal(raw, &s)
		s = strings.ToUpper(s)
		if s == stScheduled || s == stPending {
			ov.neverStart, ov.any = s, true
		}
	}
	num("__fake_scheduled_ms", &ov.scheduledMs)
	num("__fake_pending_ms", &ov.pendingMs)
	num("__fake_running_ms", &ov.runningMs)
	return ov
}
