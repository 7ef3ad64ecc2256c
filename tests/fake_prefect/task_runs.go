package main

import (
	"net/http"
)

// Task runs: the placeholders run_deployment creates in a parent flow run.

// taskRunCreateKeys are TaskRunCreate's fields (Prefect 3.9.1
// src/prefect/server/schemas/actions.py); ActionBaseModel forbids others.
var taskRunCreateKeys = setOf("id", "state", "name", "flow_run_id", "task_key", "dynamic_key",
	"cache_key", "cache_expiration", "task_version", "empirical_policy", "tags", "labels", "task_inputs")

func hCreateTaskRun(s *Server, _ *http.Request, _ []string, body []byte) response {
	at := []any{"body"}
	m, errs := decodeObject(body, at, false)
	if errs != nil {
		return resp422(errs...)
	}
	if errs = checkKeys(m, taskRunCreateKeys, at); errs != nil {
		return resp422(errs...)
	}
	// tags, empirical_policy and task_inputs are not Optional in TaskRunCreate.
	notNullFields(m, at, &errs, "tags", "task_inputs")
	notNull(m, "empirical_policy", "model_type", "Input should be a valid dictionary or instance of TaskRunPolicy", at, &errs)
	optStrings(m, "tags", at, &errs)
	optObject(m, "task_inputs", at, &errs)
	optUUID(m, "id", at, &errs)
	flowRunID := optUUID(m, "flow_run_id", at, &errs)
	taskKey := optString(m, "task_key", at, &errs)
	dynKey := optString(m, "dynamic_key", at, &errs)
	name := optString(m, "name", at, &errs)
	var stType, stName *string
	if raw := optObject(m, "state", at, &errs); raw != nil {
		sm, _ := decodeObject(raw, loc(at, "state"), true)
		stType = optString(sm, "type", loc(at, "state"), &errs)
		stName = optString(sm, "name", loc(at, "state"), &errs)
		if stType != nil && !validStates[*stType] {
			errs = append(errs, valErr{Loc: loc(at, "state", "type"), Msg: "Input should be a valid state type", Type: "enum"})
		} else if stType != nil && (stName == nil || *stName == "") {
			n := stateNames[*stType]
			stName = &n
		}
	}
	if taskKey == nil {
		errs = append(errs, valErr{Loc: loc(at, "task_key"), Msg: "Field required", Type: "missing"})
	}
	if dynKey == nil {
		errs = append(errs, valErr{Loc: loc(at, "dynamic_key"), Msg: "Field required", Type: "missing"})
	}
	if errs != nil {
		return resp422(errs...)
	}
	now := s.now()
	fr := ""
	if flowRunID != nil {
		fr = *flowRunID
	}
	key := fr + "\x00" + *taskKey + "\x00" + *dynKey
	st := s.store
	st.mu.Lock()
	if t := st.taskByKey[key]; t != nil {
		v := st.taskView(t, now)
		st.mu.Unlock()
		return jsonResp(200, v)
	}
	t := &taskRun{seq: len(st.taskRuns), id: newUUID(), flowRunID: flowRunID, taskKey: *taskKey,
		dynamicKey: *dynKey, stateType: stType, stateName: stName, stateAt: now, created: now}
	if name != nil {
		t.name = *name
	} else {
		t.name = *taskKey + "-" + t.id[:3]
	}
	st.taskRuns = append(st.taskRuns, t)
	st.taskByID[t.id] = t
	st.taskByKey[key] = t
	v := st.taskView(t, now)
	st.mu.Unlock()
	s.stats.add(func(s *stats) { s.taskRuns++ })
	return jsonResp(201, v)
}

func hReadTaskRun(s *Server, _ *http.Request, args []string, _ []byte) response {
	id, bad := pathUUID(args[0])
	if bad != nil {
		return *bad
	}
	now := s.now()
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	t := s.store.taskByID[id]
	if t == nil {
		return detailResp(404, "Task not found")
	}
	return jsonResp(200, s.store.taskView(t, now))
}
