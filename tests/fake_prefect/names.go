package main

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// newUUID returns a random (version 4) UUID string. math/rand/v2's global
// generator is goroutine-safe and fast; the ids only need to be unique.
func newUUID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// isUUID accepts the canonical 8-4-4-4-12 hex form (any case) and the
// 32-hex-digit form, as pydantic does.
func isUUID(s string) bool {
	switch len(s) {
	case 32:
		for i := 0; i < 32; i++ {
			if !isHex(s[i]) {
				return false
			}
		}
		return true
	case 36:
		for i := 0; i < 36; i++ {
			switch i {
			case 8, 13, 18, 23:
				if s[i] != '-' {
					return false
				}
			default:
				if !isHex(s[i]) {
					return false
				}
			}
		}
		return true
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

var adjectives = []string{
	"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen",
	"lively", "mighty", "nimble", "proud", "quick", "rapid", "silent", "tidy",
	"vivid", "witty", "zealous", "bold", "clever", "daring", "golden", "humble",
}

var animals = []string{
	"otter", "badger", "falcon", "heron", "lynx", "marten", "newt", "orca",
	"panda", "quail", "raven", "salmon", "tapir", "urchin", "viper", "walrus",
	"yak", "zebra", "bison", "coyote", "dingo", "egret", "ferret", "gecko",
}

// runName makes a Prefect-like generated name such as "brave-otter-123".
func runName() string {
	return adjectives[rand.IntN(len(adjectives))] + "-" +
		animals[rand.IntN(len(animals))] + "-" + strconv.Itoa(rand.IntN(1000))
}

// tsLayout renders timestamps as the Prefect server does (UTC, microseconds).
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

func ts(t time.Time) string { return t.UTC().Format(tsLayout) }

func tsPtr(t time.Time) *string {
	s := ts(t)
	return &s
}

// lowerID lower-cases an id only when needed (ids are normally lower case).
func lowerID(id string) string {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(id)
		}
	}
	return id
}
