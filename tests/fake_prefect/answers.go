package main

import (
	"bytes"
	"os"
	"strconv"
	"sync/atomic"
)

// Answers floodgate cannot (or must not) read, after the work was done: for the tests of
// floodgate's limits toward Prefect (issue 13). Read once from the environment at start, so the
// JSON config (config.go) stays as it is:
//
//	FAKE_GARBLE_2XX_RATE  share (0..1) of 2xx answers of the create routes whose body is replaced
//	                      by bytes that are not JSON (the run exists all the same);
//	FAKE_GARBLE_2XX_FIRST the first N such answers are garbled (deterministic, for a test);
//	FAKE_PAD_2XX_BYTES    every 2xx answer of the create routes is padded with spaces (still
//	                      valid JSON) to at least this many bytes.
//
// GET /_fake/stats does not count these (the runs they answer for are counted as usual).
var (
	garbleRate  = envFloat("FAKE_GARBLE_2XX_RATE")
	garbleFirst = int64(envFloat("FAKE_GARBLE_2XX_FIRST"))
	padBytes    = int(envFloat("FAKE_PAD_2XX_BYTES"))
	answered2xx atomic.Int64
)

func envFloat(name string) float64 {
	v, err := strconv.ParseFloat(os.Getenv(name), 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// mangle2xx applies the two faults above to a handler's answer on a create route.
func mangle2xx(rt *route, resp response) response {
	if !rt.lossy || resp.status < 200 || resp.status >= 300 {
		return resp
	}
	n := answered2xx.Add(1)
	if n <= garbleFirst || (garbleRate > 0 && roll(garbleRate)) {
		if resp.pooled != nil {
			putBuf(resp.pooled)
		}
		return response{status: resp.status, body: []byte("{\"id\": \"\xff\xfe<html>garbled")}
	}
	if padBytes > 0 && len(resp.body) < padBytes {
		padded := make([]byte, 0, padBytes)
		padded = append(padded, resp.body...)
		padded = append(padded, bytes.Repeat([]byte(" "), padBytes-len(resp.body))...)
		if resp.pooled != nil {
			putBuf(resp.pooled)
		}
		return response{status: resp.status, body: padded, retryAfter: resp.retryAfter}
	}
	return resp
}
