#!/usr/bin/env bash
# run-demo.sh — floodgate end to end on one machine (a fresh Debian 12, as root):
#
#   bash scripts/run-demo.sh          # deps, build, Prefect, floodgated, a demo batch, live progress
#   bash scripts/run-demo.sh stop     # stop floodgated, the Prefect worker and server
#   bash scripts/run-demo.sh status   # what is running
#
# What `run-demo.sh` does, each step skipped when already done:
#   1. installs the Debian build packages (apt-get, only when one is missing);
#   2. builds floodgated (cmake --preset release; build/release/service/floodgated);
#   3. sets up Prefect with scripts/prefect-env.sh: a venv with a pinned Prefect, a server on
#      127.0.0.1:4200 (UI on), a `process` work pool, the demo deployments and a worker;
#   4. starts floodgated on 127.0.0.1:8080 with its SQLite store in .run/floodgate.db;
#   5. submits a batch of 100 runs of demo-flow/demo and shows its progress until it ends.
# Everything stays up until `run-demo.sh stop`.
#
# Knobs (environment): DEMO_RUNS (100), DEMO_MAX_RUNNING (8), DEMO_SLEEP_S (2),
# FG_PREFECT_WORKER_LIMIT (8), DEMO_REQUEST_TIMEOUT_S (60), FLOODGATE_DEMO_PORT (8080),
# FG_PREFECT_PORT (4200), FLOODGATED (use this binary, skip the build), DEMO_SKIP_APT=1 (never
# call apt-get), DEMO_TIMEOUT_S (1800).
#
# The defaults are for a small machine that does other work too: each child is a Python process
# that spends seconds of CPU starting Prefect's engine, and every child's state changes are
# writes to the server's one SQLite database. More children at once than the machine has room
# for only makes them slower and the database busier ("database is locked" -> 503, which
# floodgate waits out, never counting it against a run's attempts). 8 at a time keeps a 2-core
# machine responsive; raise DEMO_MAX_RUNNING and FG_PREFECT_WORKER_LIMIT together on a bigger
# one. floodgated waits 60 s for an answer, as Prefect's own client does: a busy SQLite server
# answers slowly rather than not at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
FG_PORT="${FLOODGATE_DEMO_PORT:-8080}"
FG_URL="http://127.0.0.1:$FG_PORT"
FG_PID_FILE="$RUN_DIR/floodgated.pid"
FG_LOG="$RUN_DIR/floodgated.log"
FG_DB="$RUN_DIR/floodgate.db"
DEMO_RUNS="${DEMO_RUNS:-100}"
DEMO_MAX_RUNNING="${DEMO_MAX_RUNNING:-8}"
DEMO_REQUEST_TIMEOUT_S="${DEMO_REQUEST_TIMEOUT_S:-60}"
DEMO_SLEEP_S="${DEMO_SLEEP_S:-2}"
DEMO_TIMEOUT_S="${DEMO_TIMEOUT_S:-1800}"

export FG_PREFECT_PORT="${FG_PREFECT_PORT:-4200}"
export FG_PREFECT_RUN_DIR="${FG_PREFECT_RUN_DIR:-$RUN_DIR/prefect}"
export FG_PREFECT_UI="${FG_PREFECT_UI:-true}"
export FG_PREFECT_POOL="${FG_PREFECT_POOL:-floodgate-demo}"
export FG_PREFECT_WORKER_LIMIT="${FG_PREFECT_WORKER_LIMIT:-8}"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# shellcheck source=prefect-env.sh
source "$ROOT/scripts/prefect-env.sh"

# ---------------------------------------------------------------------------------------
# 1. Debian packages

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libcpprest-dev libboost-system-dev libboost-dev nlohmann-json3-dev prometheus-cpp-dev
  libsqlite3-dev libssl-dev zlib1g-dev libgtest-dev libgmock-dev
  python3 python3-venv curl procps ca-certificates
)

install_deps() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ "${DEMO_SKIP_APT:-0}" == "1" ]] && die "missing Debian packages: ${missing[*]} (DEMO_SKIP_APT=1)"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: this script is for Debian 12"
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root (or install sudo)"
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  mkdir -p "$RUN_DIR"
  $sudo apt-get update -qq >"$RUN_DIR/apt.log" 2>&1 || { tail -20 "$RUN_DIR/apt.log" >&2; die "apt-get update failed (log: $RUN_DIR/apt.log)"; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$RUN_DIR/apt.log" 2>&1 || { tail -20 "$RUN_DIR/apt.log" >&2; die "apt-get install failed (log: $RUN_DIR/apt.log)"; }
}

# ---------------------------------------------------------------------------------------
# 2. build

FLOODGATED_BIN=""
build() {
  if [[ -n "${FLOODGATED:-}" ]]; then
    [[ -x "$FLOODGATED" ]] || die "FLOODGATED=$FLOODGATED is not an executable"
    FLOODGATED_BIN="$FLOODGATED"
    return 0
  fi
  mkdir -p "$RUN_DIR"
  local log="$RUN_DIR/build.log"
  : >"$log"
  if [[ ! -f "$ROOT/build/release/build.ninja" ]]; then
    say "configuring the release build (cmake --preset release)"
    (cd "$ROOT" && cmake --preset release) >>"$log" 2>&1 || { tail -30 "$log" >&2; die "cmake configure failed (log: $log)"; }
  fi
  say "building floodgated (the first build takes several minutes; log: $log)"
  (cd "$ROOT" && cmake --build --preset release --target floodgated) >>"$log" 2>&1 \
    || { tail -40 "$log" >&2; die "the build failed (log: $log)"; }
  FLOODGATED_BIN="$ROOT/build/release/service/floodgated"
  [[ -x "$FLOODGATED_BIN" ]] || die "the build did not produce $FLOODGATED_BIN"
}

# ---------------------------------------------------------------------------------------
# 4. floodgated

fg_pid() {
  local pid
  [[ -f "$FG_PID_FILE" ]] || return 1
  pid="$(cat "$FG_PID_FILE" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  rm -f "$FG_PID_FILE"
  return 1
}

fg_healthy() { curl -fsS -m 3 -o /dev/null "$FG_URL/healthz" 2>/dev/null; }

start_floodgated() {
  local pid
  if pid="$(fg_pid)"; then
    fg_healthy && { say "floodgated already running (pid $pid) on $FG_URL"; return 0; }
  fi
  if fg_healthy; then
    die "something else answers on $FG_URL; stop it or set FLOODGATE_DEMO_PORT"
  fi
  say "starting floodgated on $FG_URL (store $FG_DB)"
  mkdir -p "$RUN_DIR"
  "$FLOODGATED_BIN" --listen "127.0.0.1:$FG_PORT" --prefect-api-url "$FG_PREFECT_API_URL" \
    --db "sqlite://$FG_DB" --request-timeout "$DEMO_REQUEST_TIMEOUT_S" </dev/null >>"$FG_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$FG_PID_FILE"
  local i
  for ((i = 0; i < 300; i++)); do
    fg_healthy && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$FG_LOG" >&2; rm -f "$FG_PID_FILE"; die "floodgated exited (log: $FG_LOG)"; }
    sleep 0.1
  done
  die "floodgated did not answer $FG_URL/healthz within 30 s (log: $FG_LOG)"
}

stop_floodgated() {
  local pid i
  if pid="$(fg_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 650; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    say "floodgated stopped (pid $pid)"
  fi
  rm -f "$FG_PID_FILE"
}

# ---------------------------------------------------------------------------------------
# 5. the demo batch

PY="$FG_PREFECT_VENV/bin/python"

submit_and_watch() {
  say "submitting $DEMO_RUNS runs of demo-flow/demo (max_running $DEMO_MAX_RUNNING, each sleeps ${DEMO_SLEEP_S}s)"
  local rc=0
  if [[ -f "$ROOT/client/python/floodgate/__main__.py" ]]; then
    PYTHONPATH="$ROOT/client/python${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m floodgate --url "$FG_URL" \
      submit demo-flow/demo --params "{\"x\": \"{index}\", \"sleep_s\": $DEMO_SLEEP_S}" \
      --count "$DEMO_RUNS" --max-running "$DEMO_MAX_RUNNING" --tag floodgate-demo \
      --wait --timeout "$DEMO_TIMEOUT_S" || rc=$?
  else
    # No CLI: the REST API with a small progress loop (standard library only).
    "$PY" - "$FG_URL" "$DEMO_RUNS" "$DEMO_MAX_RUNNING" "$DEMO_SLEEP_S" "$DEMO_TIMEOUT_S" <<'PY' || rc=$?
import json, sys, time, urllib.request
url, n, max_running, sleep_s, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
def call(path, body=None, t=60):
    req = urllib.request.Request(url + path, method="POST" if body is not None else "GET",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=t))
b = call("/v1/batches", {"deployment": "demo-flow/demo", "tags": ["floodgate-demo"],
                         "runs": [{"parameters": {"x": i, "sleep_s": sleep_s}} for i in range(n)],
                         "limits": {"max_running": max_running}})
print(f"batch {b['id']}")
deadline = time.monotonic() + timeout
tty = sys.stdout.isatty()
while True:
    c = b["counts"]
    done = sum(c.get(k, 0) for k in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "LAUNCH_FAILED", "SKIPPED"))
    width = 40
    fill = int(width * done / max(1, b["total"]))
    line = (f"{b['state']:<9} [{'#' * fill}{'.' * (width - fill)}] {done}/{b['total']}  "
            f"running {c.get('LAUNCHED', 0) + c.get('LAUNCHING', 0)}  ok {c.get('COMPLETED', 0)}  "
            f"failed {c.get('FAILED', 0) + c.get('CRASHED', 0) + c.get('LAUNCH_FAILED', 0)}")
    sys.stdout.write(("\r" + line + "\x1b[K") if tty else line + "\n")
    sys.stdout.flush()
    if b["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
        print()
        sys.exit(0 if b["state"] == "COMPLETED" else 1)
    if time.monotonic() > deadline:
        print(f"\nstill {b['state']} after {timeout:.0f}s")
        sys.exit(4)
    b = call(f"/v1/batches/{b['id']}?wait_s=2&after_version={b['version']}")
PY
  fi
  return "$rc"
}

where_next() {
  cat <<EOF

$(printf '\033[1m')Where to look next$(printf '\033[0m')
  status page   $FG_URL/
  metrics       $FG_URL/metrics
  REST API      $FG_URL/v1/batches           (GET /v1/batches/ID, /v1/batches/ID/runs)
  Prefect UI    http://127.0.0.1:$FG_PREFECT_PORT/     (API: $FG_PREFECT_API_URL)
  CLI           PYTHONPATH=client/python $PY -m floodgate --url $FG_URL list
  logs          $FG_LOG, $FG_PREFECT_RUN_DIR/logs/
  more          DEMO_RUNS=500 bash scripts/run-demo.sh   (submits another batch)
  stop it all   bash scripts/run-demo.sh stop
EOF
}

status() {
  local pid
  if pid="$(fg_pid)"; then echo "floodgated: running (pid $pid) $FG_URL"; else echo "floodgated: stopped"; fi
  prefect_env_status
}

case "${1:-up}" in
  up | start | "")
    t0=$SECONDS
    install_deps
    build
    say "setting up Prefect (server, work pool, demo deployments, worker)"
    prefect_env_up || die "Prefect setup failed (logs: $FG_PREFECT_RUN_DIR/logs/)"
    start_floodgated
    say "ready in $((SECONDS - t0)) s"
    rc=0
    submit_and_watch || rc=$?
    case "$rc" in
      0) say "the demo batch COMPLETED" ;;
      1) say "the demo batch ended FAILED or CANCELLED: see $FG_URL/ and the runs' last_error" ;;
      *) say "watching the batch stopped (exit $rc); it goes on in floodgated" ;;
    esac
    where_next
    # Services stay up either way; the exit status says whether the demo batch completed.
    exit "$rc"
    ;;
  stop | down)
    stop_floodgated
    prefect_env_down
    ;;
  status)
    status
    ;;
  *)
    echo "usage: $0 [up|stop|status]" >&2
    exit 2
    ;;
esac
