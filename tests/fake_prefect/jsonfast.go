package main

// Allocation-light JSON helpers for the hot paths. Request bodies are
// checked once with json.Valid, then split into top-level members without
// copying; responses for flow runs are appended by hand (see encode.go).

import (
	"bytes"
	"encoding/json"
	"sync"
)

// member is one "key": value pair of a JSON object; both slices point into
// the request body.
type member struct {
	key []byte // unescaped key
	val json.RawMessage
}

// obj is a JSON object's members in document order.
type obj []member

// get returns the value of key (the last one if repeated, as encoding/json).
func (o obj) get(key string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if string(o[i].key) == key {
			return o[i].val, true
		}
	}
	return nil, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at b[i]=='"'.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// scanObject splits valid JSON b into members; ok=false if b is not an object.
func scanObject(b []byte) (obj, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	o := make(obj, 0, 8)
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) || b[i] == '}' {
			return o, true
		}
		kEnd := skipString(b, i)
		key := b[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			json.Unmarshal(b[i:kEnd], &s)
			key = []byte(s)
		}
		i = skipWS(b, kEnd) + 1 // past ':'
		i = skipWS(b, i)
		vEnd := skipValue(b, i)
		o = append(o, member{key: key, val: b[i:vEnd]})
		i = skipWS(b, vEnd)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

// scanArray splits valid JSON b into elements; ok=false if b is not an array.
func scanArray(b []byte) ([]json.RawMessage, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	out := make([]json.RawMessage, 0, 16)
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) || b[i] == ']' {
			return out, true
		}
		end := skipValue(b, i)
		out = append(out, b[i:end])
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

// jsonString decodes a JSON string value, fast when it has no escapes.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// --- output ---

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // do not keep huge buffers
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

func appendStrings(b []byte, l []string) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}
