// Command fake-prefect is a fast, fault-injecting fake of the Prefect 3 REST
// API for floodgate's integration tests and benchmarks.
//
//	fake-prefect --listen 127.0.0.1:0 [--config '{"csrf_enabled":true}' | --config @file.json]
//
// It prints exactly one line, "listening on HOST:PORT", once it accepts
// connections. The API root is /api; the control endpoints are under
// /_fake/ (see README.md).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	config := flag.String("config", "", "initial config: a JSON object, or @path to a JSON file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file until SIGINT/SIGTERM")
	flag.Parse()

	if *cpuProfile != "" {
		stopProfileOnSignal(*cpuProfile)
	}

	// Runs accumulate for the life of the process and every request
	// allocates a little: trade memory for fewer GC cycles unless the user
	// tuned the GC already.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(4 << 30)
	}

	srv := NewServer()
	if *config != "" {
		raw := []byte(*config)
		if strings.HasPrefix(*config, "@") {
			var err error
			if raw, err = os.ReadFile((*config)[1:]); err != nil {
				fmt.Fprintln(os.Stderr, "fake-prefect:", err)
				os.Exit(2)
			}
		}
		if _, err := srv.SetConfig(raw); err != nil {
			fmt.Fprintln(os.Stderr, "fake-prefect: bad --config:", err)
			os.Exit(2)
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-prefect:", err)
		os.Exit(1)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No read/write timeouts: injected latency and stalls may be long.
	}
	// os.Stdout is unbuffered, so the line is flushed at once.
	fmt.Printf("listening on %s\n", ln.Addr().String())
	if err := hs.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "fake-prefect:", err)
		os.Exit(1)
	}
}

// stopProfileOnSignal profiles the CPU until SIGINT or SIGTERM, then writes
// the profile and exits.
func stopProfileOnSignal(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-prefect: cpuprofile:", err)
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(0)
	}()
}
