package main

import (
	"strconv"
	"time"
)

// Hand-written encoders for the flow run object, the most frequent
// response. The field set and order are:
//
//	{"id","name","flow_id","deployment_id","parameters","tags",
//	 "idempotency_key","parent_task_run_id","work_queue_name","job_variables",
//	 "labels","state_type","state_name","state":{"type","name","message",
//	 "timestamp","state_details"},"start_time","end_time",
//	 "expected_start_time","created","run_count"}

// appendTime appends t as "2006-01-02T15:04:05.000000Z" (tsLayout, UTC)
// without the generic formatter.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	us := t.Nanosecond() / 1000
	if y < 0 || y > 9999 {
		b = append(b, '"')
		b = t.AppendFormat(b, tsLayout)
		return append(b, '"')
	}
	b = append(b, '"')
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	b = append(b, '.')
	b = appendDigits(b, us, 6)
	return append(b, 'Z', '"')
}

func appendDigits(b []byte, v, width int) []byte {
	var tmp [8]byte
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:width]...)
}

func appendTimeOrNull(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	return appendTime(b, t)
}

func appendState(b []byte, st runState) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, st.typ)
	b = append(b, `,"name":`...)
	b = appendString(b, st.name)
	b = append(b, `,"message":`...)
	b = appendString(b, st.message)
	b = append(b, `,"timestamp":`...)
	b = appendTime(b, st.at)
	b = append(b, `,"state_details":{`...)
	if st.tid != "" {
		b = append(b, `"transition_id":`...)
		b = appendString(b, st.tid)
	}
	return append(b, "}}"...)
}

func appendRun(b []byte, r *flowRun, st runState) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, r.id...)
	b = append(b, `","name":`...)
	b = appendString(b, r.name)
	b = append(b, `,"flow_id":"`...)
	b = append(b, r.flowID...)
	b = append(b, `","deployment_id":"`...)
	b = append(b, r.deployID...)
	b = append(b, `","parameters":`...)
	b = append(b, r.params...)
	b = append(b, `,"tags":`...)
	b = appendStrings(b, r.tags)
	b = append(b, `,"idempotency_key":`...)
	b = appendStringPtr(b, r.idemKey)
	b = append(b, `,"parent_task_run_id":`...)
	b = appendStringPtr(b, r.parentTaskRunID)
	b = append(b, `,"work_queue_name":`...)
	b = appendString(b, r.workQueue)
	b = append(b, `,"job_variables":`...)
	b = append(b, r.jobVars...)
	b = append(b, `,"labels":`...)
	b = append(b, r.labels...)
	b = append(b, `,"state_type":`...)
	b = appendString(b, st.typ)
	b = append(b, `,"state_name":`...)
	b = appendString(b, st.name)
	b = append(b, `,"state":`...)
	b = appendState(b, st)
	b = append(b, `,"start_time":`...)
	b = appendTimeOrNull(b, st.start)
	b = append(b, `,"end_time":`...)
	b = appendTimeOrNull(b, st.end)
	b = append(b, `,"expected_start_time":"`...)
	b = append(b, r.createdStr...)
	b = append(b, `","created":"`...)
	b = append(b, r.createdStr...)
	b = append(b, `","run_count":`...)
	b = strconv.AppendInt(b, int64(st.runCount), 10)
	return append(b, '}')
}

// runView pairs a run with its state computed under the store lock; the
// run's other fields are immutable, so encoding happens after unlocking.
type runView struct {
	r  *flowRun
	st runState
}

// runResp renders one flow run as a response body from a pooled buffer.
func runResp(status int, v runView) response {
	bp := getBuf()
	*bp = appendRun(*bp, v.r, v.st)
	return response{status: status, body: *bp, pooled: bp}
}

// runsResp renders a JSON array of runs, optionally wrapped as {"runs": [...]}.
func runsResp(views []runView, wrap string) response {
	bp := getBuf()
	b := *bp
	if wrap != "" {
		b = append(b, `{"`...)
		b = append(b, wrap...)
		b = append(b, `":`...)
	}
	b = append(b, '[')
	for i, v := range views {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRun(b, v.r, v.st)
	}
	b = append(b, ']')
	if wrap != "" {
		b = append(b, '}')
	}
	*bp = b
	return response{status: 200, body: b, pooled: bp}
}
