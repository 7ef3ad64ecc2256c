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
# Knobs (environment): DEMO_RUNS (100), DEMO_SLEEP_S (2), DEMO_MAX_RUNNING and
# FG_PREFECT_WORKER_LIMIT (both 2 per CPU core, 2 to 8: 4 on a 2-core machine),
# DEMO_REQUEST_TIMEOUT_S (60), DEMO_STALL_S (600), DEMO_TIMEOUT_S (0: none),
# FG_PREFECT_START_TIMEOUT (900: seconds for the Prefect server and worker to come up; a
# first start migrates a new database, 20 s on an idle machine, over 3 minutes at load 17),
# FLOODGATE_DEMO_PORT (8080), FG_PREFECT_PORT (4200), FLOODGATED (use this binary, skip the
# build), DEMO_SKIP_APT=1 (never call apt-get).
#
# The defaults are for a small machine that does other work too. Each child is a Python process
# that spends 3-5 s of CPU starting Prefect's engine, and every child's state changes are writes
# to the server's one SQLite database, so the worker's pace is the machine's: on 2 idle cores
# about 0.4 children a second, with two CPU hogs and builds beside it (load 15-20) 0.1 a second
# or less, and 100 children then take 15-30 minutes. That is slow, not stuck; the watch
# therefore has no fixed time limit: it waits while the batch moves (a child changes state in
# floodgate or in Prefect), prints every 30 s what it waits for (floodgate's counts, the
# children's states in Prefect, the rate and ETA, the load average), and gives up only when
# nothing moved for DEMO_STALL_S (exit 4; the batch goes on in floodgated). DEMO_TIMEOUT_S
# sets a hard limit if you want one.
# Two children per core run at once (DEMO_MAX_RUNNING = FG_PREFECT_WORKER_LIMIT): more only
# makes each child slower and the database busier ("database is locked" -> 503, which
# floodgate waits out, never counting it against a run's attempts, but which the worker and
# the children's own Prefect clients retry with back-offs of seconds), and a batch that
# launches more than the worker runs leaves children SCHEDULED, where Prefect's late-runs
# service writes a "Late" state for each. floodgated waits 60 s for an answer, as Prefect's
# own client does: a busy SQLite server answers slowly rather than not at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
FG_PORT="${FLOODGATE_DEMO_PORT:-8080}"
FG_URL="http://127.0.0.1:$FG_PORT"
FG_PID_FILE="$RUN_DIR/floodgated.pid"
FG_LOG="$RUN_DIR/floodgated.log"
FG_DB="$RUN_DIR/floodgate.db"
DEMO_RUNS="${DEMO_RUNS:-100}"
# Two children per CPU core, at least 2, at most 8 (see above).
DEMO_CONCURRENCY=$(( $(nproc 2>/dev/null || echo 2) * 2 ))
if ((DEMO_CONCURRENCY < 2)); then DEMO_CONCURRENCY=2; fi
if ((DEMO_CONCURRENCY > 8)); then DEMO_CONCURRENCY=8; fi
DEMO_MAX_RUNNING="${DEMO_MAX_RUNNING:-$DEMO_CONCURRENCY}"
DEMO_REQUEST_TIMEOUT_S="${DEMO_REQUEST_TIMEOUT_S:-60}"
DEMO_SLEEP_S="${DEMO_SLEEP_S:-2}"
DEMO_TIMEOUT_S="${DEMO_TIMEOUT_S:-0}"
DEMO_STALL_S="${DEMO_STALL_S:-600}"

export FG_PREFECT_PORT="${FG_PREFECT_PORT:-4200}"
export FG_PREFECT_RUN_DIR="${FG_PREFECT_RUN_DIR:-$RUN_DIR/prefect}"
export FG_PREFECT_UI="${FG_PREFECT_UI:-true}"
export FG_PREFECT_POOL="${FG_PREFECT_POOL:-floodgate-demo}"
export FG_PREFECT_WORKER_LIMIT="${FG_PREFECT_WORKER_LIMIT:-$DEMO_CONCURRENCY}"
# A first start of Prefect's server on a busy machine can take minutes (see prefect-env.sh).
export FG_PREFECT_START_TIMEOUT="${FG_PREFECT_START_TIMEOUT:-900}"

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
  libpq-dev # the PostgreSQL store: CMakeLists.txt needs libpq (find_package(PostgreSQL))
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
  # Waits while the batch moves (see scripts/demo_watch.py): a status line every 30 s (redrawn
  # in place on a terminal) with floodgate's counts, the children's states in Prefect and the
  # machine's load; gives up only when nothing moved for DEMO_STALL_S.
  local rc=0
  "$PY" "$ROOT/scripts/demo_watch.py" "$FG_URL" "$FG_PREFECT_API_URL" --deployment demo-flow/demo \
    --runs "$DEMO_RUNS" --max-running "$DEMO_MAX_RUNNING" --sleep-s "$DEMO_SLEEP_S" \
    --tag floodgate-demo --stall-s "$DEMO_STALL_S" --timeout-s "$DEMO_TIMEOUT_S" || rc=$?
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
