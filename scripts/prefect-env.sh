#!/usr/bin/env bash
# prefect-env.sh — a local, throw-away Prefect 3 for floodgate's e2e tests and demo.
#
# Source it and call the functions, or run it as a command:
#
#   source scripts/prefect-env.sh
#   prefect_env_up            # venv + server + work pool + demo deployments + worker
#   prefect_env_down          # stop worker and server (by the PIDs recorded in the run dir)
#
#   bash scripts/prefect-env.sh up|down|status|venv|server-start|server-stop|
#                               worker-start|worker-stop|pool|deploy|reset-db|env
#
# Every step is idempotent: calling `up` again starts only what is not running. The worker
# runs under a small supervisor that starts it again if it exits (Prefect's worker gives up
# after a run of failed polls, e.g. while its server is down).
# Nothing is ever killed by name or pattern: only the PIDs this script recorded, and the
# processes those PIDs started (their descendants).
#
# Settings (environment variables, all optional):
#   FG_PREFECT_VERSION       pinned Prefect version to install             (3.9.1)
#   FG_PREFECT_PYTHON        interpreter for the venv (3.9–3.12; 3.11 preferred) (python3.11)
#   FG_PREFECT_VENV          virtualenv folder                              (<repo>/.venv-prefect)
#   FG_PREFECT_HOST          address the server listens on                  (127.0.0.1)
#   FG_PREFECT_PORT          port the server listens on                     (4200)
#   FG_PREFECT_RUN_DIR       run dir: PREFECT_HOME, logs, pid files         (<repo>/.run/prefect)
#   FG_PREFECT_POOL          process work pool name                         (floodgate-demo)
#   FG_PREFECT_WORKER_LIMIT  concurrent flow runs of the worker (--limit)   (16)
#                            (each flow run is a Python process that spends ~3.5 s of CPU in
#                            Prefect's engine, most of it importing Prefect. On SQLite more
#                            slots also mean more write races in the server: 503 "database is
#                            locked", and clients that back off 2, 4, 8, ... s; the e2e tests
#                            run 5)
#   FG_PREFECT_UI            serve the Prefect UI: true|false               (false)
#   FG_PREFECT_START_TIMEOUT seconds to wait for the server / worker        (180)
#   FG_PREFECT_EXTRA_PIP     more pip requirements for the venv (e.g. "pytest") ()
#   FG_PREFECT_LEAN          true: a server for tests, not for people: no event persister,
#                            triggers, task-run recorder, foreman, late-runs, pause-expiration,
#                            repossessor or cancellation-cleanup services, and flow runs do
#                            not ship their logs to the API. Every one of those writes to
#                            the SQLite database the tests' creates and state changes contend
#                            for ("database is locked" -> 503). Parent/child state mirroring
#                            is an orchestration rule and stays.               (false)
#   FG_PREFECT_LOGGING_LEVEL the level of Prefect's own loggers in the worker and the flow runs
#                            (PREFECT_LOGGING_LEVEL; the e2e tests drop every PREFECT_* variable,
#                            hence this name)                                   (WARNING)
#   FG_PREFECT_RUNNER_POLL_FREQUENCY  the worker's PREFECT_RUNNER_POLL_FREQUENCY (s): how often
#                            its Runner looks for cancelled runs, and on Prefect 3.2 also when a
#                            finished run's --limit slot is given back (docs/compatibility.md)
#                                                                     (Prefect's default: 10)
#   FG_PREFECT_SERVER_LOG_LEVEL  the server's (uvicorn's) log level; INFO logs every request
#                            with its status (an access log)                   (WARNING)
#   FG_PREFECT_LOG_RETRYABLE_ERRORS  true: the server logs each error it answers 503 for
#                            (database locked/busy, ...) with its traceback     (false)
#   FG_PREFECT_DB_URL        the server's database instead of SQLite under PREFECT_HOME, e.g.
#                            postgresql+asyncpg://user:pass@127.0.0.1:PORT/db (asyncpg comes
#                            with Prefect). reset-db does not empty it: use a fresh database
#                            (scripts/e2e-versions.sh with FG_E2E_VERSIONS_DB=postgresql
#                            starts and removes a throw-away cluster)           ()
#   FG_PREFECT_IDLE_POOL     also create this process pool, which no worker polls, and deploy
#                            demo-flow/idle on it (runs stay SCHEDULED until someone sets
#                            their state through the API)                      ()
#
# The pin: Prefect 3.9.1 is the newest 3.x on PyPI when this was written; it installs on
# Python 3.11 (Debian 12's python3) in about 40 s and serves the bulk create endpoint.

# ---------------------------------------------------------------------------------------
# configuration

_fg_prefect_script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FG_ROOT="${FG_ROOT:-$(cd "$_fg_prefect_script_dir/.." && pwd)}"

FG_PREFECT_VERSION="${FG_PREFECT_VERSION:-3.9.1}"
FG_PREFECT_PYTHON="${FG_PREFECT_PYTHON:-}"
FG_PREFECT_VENV="${FG_PREFECT_VENV:-$FG_ROOT/.venv-prefect}"
FG_PREFECT_HOST="${FG_PREFECT_HOST:-127.0.0.1}"
FG_PREFECT_PORT="${FG_PREFECT_PORT:-4200}"
FG_PREFECT_RUN_DIR="${FG_PREFECT_RUN_DIR:-$FG_ROOT/.run/prefect}"
FG_PREFECT_POOL="${FG_PREFECT_POOL:-floodgate-demo}"
FG_PREFECT_WORKER_LIMIT="${FG_PREFECT_WORKER_LIMIT:-16}"
FG_PREFECT_UI="${FG_PREFECT_UI:-false}"
FG_PREFECT_START_TIMEOUT="${FG_PREFECT_START_TIMEOUT:-180}"
FG_PREFECT_EXTRA_PIP="${FG_PREFECT_EXTRA_PIP:-}"
FG_PREFECT_LEAN="${FG_PREFECT_LEAN:-false}"
FG_PREFECT_SERVER_LOG_LEVEL="${FG_PREFECT_SERVER_LOG_LEVEL:-WARNING}"
FG_PREFECT_LOG_RETRYABLE_ERRORS="${FG_PREFECT_LOG_RETRYABLE_ERRORS:-false}"
FG_PREFECT_IDLE_POOL="${FG_PREFECT_IDLE_POOL:-}"
FG_PREFECT_DB_URL="${FG_PREFECT_DB_URL:-}"
FG_PREFECT_RUNNER_POLL_FREQUENCY="${FG_PREFECT_RUNNER_POLL_FREQUENCY:-}"
FG_PREFECT_FLOWS_DIR="${FG_PREFECT_FLOWS_DIR:-$FG_ROOT/tests/e2e/flows}"

_fg_log() { printf '[prefect-env] %s\n' "$*" >&2; }
_fg_die() { printf '[prefect-env] error: %s\n' "$*" >&2; return 1; }

# The environment every Prefect process of this setup runs with: its own PREFECT_HOME (so the
# user's ~/.prefect and profiles are never read or written), no telemetry, no UI unless asked,
# no services that only matter for schedules, and a worker that polls every second.
prefect_env_export() {
  # Absolute paths: the server and the worker run from inside the run dir.
  mkdir -p "$FG_PREFECT_RUN_DIR"
  FG_PREFECT_RUN_DIR="$(cd "$FG_PREFECT_RUN_DIR" && pwd)"
  case "$FG_PREFECT_VENV" in /*) ;; *) FG_PREFECT_VENV="$PWD/$FG_PREFECT_VENV" ;; esac
  case "$FG_PREFECT_FLOWS_DIR" in /*) ;; *) FG_PREFECT_FLOWS_DIR="$PWD/$FG_PREFECT_FLOWS_DIR" ;; esac
  export FG_PREFECT_API_URL="http://$FG_PREFECT_HOST:$FG_PREFECT_PORT/api"
  export PREFECT_HOME="$FG_PREFECT_RUN_DIR/home"
  export PREFECT_PROFILES_PATH="$PREFECT_HOME/profiles.toml"
  export PREFECT_API_URL="$FG_PREFECT_API_URL"
  export PREFECT_SERVER_API_HOST="$FG_PREFECT_HOST"
  export PREFECT_SERVER_API_PORT="$FG_PREFECT_PORT"
  export PREFECT_SERVER_ANALYTICS_ENABLED=false
  export PREFECT_UI_ENABLED="$FG_PREFECT_UI"
  export PREFECT_UI_API_URL="$FG_PREFECT_API_URL"
  export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false
  export PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=false
  export PREFECT_SERVER_LOGGING_LEVEL="${PREFECT_SERVER_LOGGING_LEVEL:-WARNING}"
  # A 503 from the server is one of its "retryable" exceptions (SQLite busy/locked, any other
  # DBAPIError); Prefect logs them, with the traceback, only when asked.
  export PREFECT_SERVER_LOG_RETRYABLE_ERRORS="$FG_PREFECT_LOG_RETRYABLE_ERRORS"
  export PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS=false
  export PREFECT_CLI_PROMPT=false
  export PREFECT_CLI_COLORS=false
  export PREFECT_CLI_WRAP_LINES=false
  if [[ -n "$FG_PREFECT_RUNNER_POLL_FREQUENCY" ]]; then
    export PREFECT_RUNNER_POLL_FREQUENCY="$FG_PREFECT_RUNNER_POLL_FREQUENCY"
  fi
  export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-1}"
  export PREFECT_WORKER_PREFETCH_SECONDS="${PREFECT_WORKER_PREFETCH_SECONDS:-10}"
  export PREFECT_WORKER_HEARTBEAT_SECONDS="${PREFECT_WORKER_HEARTBEAT_SECONDS:-10}"
  # Under load the SQLite-backed server answers 503 ("database is locked") now and then; the
  # worker and the flow runs it starts retry those. Five tries is too few on a busy 2-core box
  # (a child then crashes in "Failed to submit flow run to infrastructure").
  export PREFECT_CLIENT_MAX_RETRIES="${PREFECT_CLIENT_MAX_RETRIES:-10}"
  # Flow runs started by the worker: keep their chatter at WARNING in the worker log
  # (FG_PREFECT_LOGGING_LEVEL=INFO shows the worker's submissions, its "Flow run limit reached;
  # N flow runs in progress" and each flow run's start and end; the e2e tests pass it on).
  export PREFECT_LOGGING_LEVEL="${PREFECT_LOGGING_LEVEL:-${FG_PREFECT_LOGGING_LEVEL:-WARNING}}"
  if [[ "$FG_PREFECT_LEAN" == "true" ]]; then
    local svc
    for svc in EVENT_PERSISTER TRIGGERS TASK_RUN_RECORDER FOREMAN LATE_RUNS PAUSE_EXPIRATIONS \
               REPOSSESSOR CANCELLATION_CLEANUP; do
      export "PREFECT_SERVER_SERVICES_${svc}_ENABLED=false"
    done
    export PREFECT_LOGGING_TO_API_ENABLED=false
  fi
  # The e2e tests drop every PREFECT_* variable they inherit, hence an FG_ name for this one.
  # PREFECT_API_DATABASE_CONNECTION_URL is the name 3.2 to 3.9 all read.
  if [[ -n "$FG_PREFECT_DB_URL" ]]; then
    export PREFECT_API_DATABASE_CONNECTION_URL="$FG_PREFECT_DB_URL"
  fi
  mkdir -p "$PREFECT_HOME" "$FG_PREFECT_RUN_DIR/logs"
}

# Print the exports, e.g. `eval "$(bash scripts/prefect-env.sh env)"`.
prefect_env_print() {
  prefect_env_export
  local v
  for v in FG_PREFECT_API_URL PREFECT_HOME PREFECT_PROFILES_PATH PREFECT_API_URL \
           FG_PREFECT_VENV FG_PREFECT_RUN_DIR FG_PREFECT_POOL; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
}

# ---------------------------------------------------------------------------------------
# process helpers (PID files only; never by name)

_fg_pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

_fg_read_pid() {  # _fg_read_pid NAME -> prints the recorded PID if that process still runs
  local f="$FG_PREFECT_RUN_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  if _fg_pid_alive "$pid"; then printf '%s\n' "$pid"; return 0; fi
  rm -f "$f"
  return 1
}

_fg_descendants() {  # every descendant PID of $1, children first listed before grandchildren
  local pid="$1" child
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    printf '%s\n' "$child"
    _fg_descendants "$child"
  done
}

# Stop PID and everything it started: SIGTERM, wait up to $2 s, then SIGKILL what is left.
_fg_kill_tree() {
  local pid="$1" timeout="${2:-20}" sig="${3:-TERM}" tree p i
  _fg_pid_alive "$pid" || return 0
  tree="$pid $(_fg_descendants "$pid" | tr '\n' ' ')"
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    _fg_pid_alive "$pid" || break
    sleep 0.1
  done
  # Children the parent did not take down with it (flow run processes, uvicorn).
  for p in $tree; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < 30; i++)); do
    local any=0
    for p in $tree; do _fg_pid_alive "$p" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
  # Reap it if it is our child, so it does not linger as a zombie.
  wait "$pid" 2>/dev/null || true
  return 0
}

# ---------------------------------------------------------------------------------------
# venv

_fg_pick_python() {
  if [[ -n "$FG_PREFECT_PYTHON" ]]; then printf '%s\n' "$FG_PREFECT_PYTHON"; return 0; fi
  local c
  for c in python3.11 python3.12 python3.10 python3; do
    if command -v "$c" >/dev/null 2>&1; then printf '%s\n' "$c"; return 0; fi
  done
  _fg_die "no python3 found: install python3 and python3-venv"
}

# Every file the installed distributions list (bytecode aside) is still on disk.
_fg_venv_intact() {
  "$FG_PREFECT_VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
for d in m.distributions():
    for f in d.files or ():
        if f.suffix in (".pyc",) or "__pycache__" in f.parts or f.parts[0] == "..":
            continue
        if not f.locate().exists():
            print(f"missing: {d.metadata['Name']}: {f}", file=sys.stderr)
            sys.exit(1)
PY
}

prefect_env_venv() {
  prefect_env_export
  local py want have
  want="$FG_PREFECT_VERSION"
  if [[ -x "$FG_PREFECT_VENV/bin/python" ]]; then
    have="$("$FG_PREFECT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("prefect"))' 2>/dev/null || true)"
    if [[ "$have" == "$want" ]] && ! _fg_venv_intact; then
      # Files of installed packages are gone (e.g. a `git clean` of the work tree while the
      # venv was not yet ignored): start over rather than run a half-deleted Prefect.
      _fg_log "venv $FG_PREFECT_VENV is damaged (installed files missing); recreating it"
      rm -rf "$FG_PREFECT_VENV"
      have=""
    fi
    if [[ "$have" == "$want" ]]; then
      if [[ -n "$FG_PREFECT_EXTRA_PIP" ]]; then
        # shellcheck disable=SC2086
        "$FG_PREFECT_VENV/bin/pip" install -q --disable-pip-version-check $FG_PREFECT_EXTRA_PIP \
          >>"$FG_PREFECT_RUN_DIR/logs/pip.log" 2>&1 || _fg_die "pip install $FG_PREFECT_EXTRA_PIP failed; see $FG_PREFECT_RUN_DIR/logs/pip.log" || return 1
      fi
      return 0
    fi
  fi
  py="$(_fg_pick_python)" || return 1
  if ! "$py" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 13) else 1)'; then
    _fg_die "$py is $("$py" --version 2>&1); Prefect $want needs Python 3.9–3.13 (set FG_PREFECT_PYTHON)" || return 1
  fi
  if [[ -d "$FG_PREFECT_VENV" && ! -x "$FG_PREFECT_VENV/bin/python" ]]; then
    _fg_log "removing the broken venv $FG_PREFECT_VENV (no bin/python)"
    rm -rf "$FG_PREFECT_VENV"
  fi
  if [[ ! -x "$FG_PREFECT_VENV/bin/python" ]]; then
    _fg_log "creating venv $FG_PREFECT_VENV ($("$py" --version 2>&1))"
    "$py" -m venv "$FG_PREFECT_VENV" >>"$FG_PREFECT_RUN_DIR/logs/pip.log" 2>&1 \
      || _fg_die "could not create a venv with $py (on Debian: apt-get install python3-venv); see $FG_PREFECT_RUN_DIR/logs/pip.log" || return 1
  fi
  _fg_log "installing prefect==$want into $FG_PREFECT_VENV (takes a minute or two)"
  # shellcheck disable=SC2086
  "$FG_PREFECT_VENV/bin/pip" install -q --disable-pip-version-check "prefect==$want" $FG_PREFECT_EXTRA_PIP \
    >>"$FG_PREFECT_RUN_DIR/logs/pip.log" 2>&1 \
    || _fg_die "pip install prefect==$want failed; see $FG_PREFECT_RUN_DIR/logs/pip.log" || return 1
}

# ---------------------------------------------------------------------------------------
# server

_fg_http_ok() {  # _fg_http_ok URL -> 0 when it answers 2xx within 3 s
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 3 -o /dev/null "$1" 2>/dev/null
  else
    "$FG_PREFECT_VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=3).read()
PY
  fi
}

prefect_env_server_healthy() { _fg_http_ok "http://$FG_PREFECT_HOST:$FG_PREFECT_PORT/api/health"; }

prefect_env_wait_health() {  # [timeout_s]
  local timeout="${1:-$FG_PREFECT_START_TIMEOUT}" start=$SECONDS pid next_note=30
  while ! prefect_env_server_healthy; do
    # A first start migrates a new database (and with the UI on, prepares its files): a minute
    # of CPU, several on a busy machine. Say so, rather than sit silent.
    if ((SECONDS - start >= next_note)); then
      _fg_log "still waiting for the Prefect server ($((SECONDS - start)) s of ${timeout} s; load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
      next_note=$((next_note + 30))
    fi
    if ! pid="$(_fg_read_pid server)"; then
      _fg_log "the Prefect server exited; last lines of $FG_PREFECT_RUN_DIR/logs/server.log:"
      tail -n 30 "$FG_PREFECT_RUN_DIR/logs/server.log" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS - start > timeout)); then
      _fg_log "the Prefect server did not answer /api/health in ${timeout}s; see $FG_PREFECT_RUN_DIR/logs/server.log"
      tail -n 30 "$FG_PREFECT_RUN_DIR/logs/server.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

prefect_env_server_start() {
  prefect_env_export
  local pid
  if pid="$(_fg_read_pid server)"; then
    prefect_env_wait_health || return 1
    return 0
  fi
  if prefect_env_server_healthy; then
    _fg_die "something else already answers on $FG_PREFECT_HOST:$FG_PREFECT_PORT (not started by this script); stop it or set FG_PREFECT_PORT" || return 1
  fi
  [[ -x "$FG_PREFECT_VENV/bin/prefect" ]] || { prefect_env_venv || return 1; }
  _fg_log "starting Prefect server on $FG_PREFECT_HOST:$FG_PREFECT_PORT (PREFECT_HOME=$PREFECT_HOME)"
  local ui_flag="--no-ui"
  [[ "$FG_PREFECT_UI" == "true" ]] && ui_flag="--ui"
  (
    cd "$FG_PREFECT_RUN_DIR" || exit 1
    exec "$FG_PREFECT_VENV/bin/prefect" server start --host "$FG_PREFECT_HOST" \
      --port "$FG_PREFECT_PORT" --analytics-off --no-scheduler "$ui_flag" \
      --log-level "$FG_PREFECT_SERVER_LOG_LEVEL" </dev/null >>"$FG_PREFECT_RUN_DIR/logs/server.log" 2>&1
  ) &
  echo $! >"$FG_PREFECT_RUN_DIR/server.pid"
  prefect_env_wait_health || return 1
  _fg_log "Prefect server up: $FG_PREFECT_API_URL"
}

prefect_env_server_stop() {
  prefect_env_export
  local pid
  if pid="$(_fg_read_pid server)"; then
    _fg_kill_tree "$pid" 30
    _fg_log "Prefect server stopped (pid $pid)"
  fi
  rm -f "$FG_PREFECT_RUN_DIR/server.pid"
}

# Start from an empty database (and fresh logs) next time: only while the server is stopped.
prefect_env_reset_db() {
  prefect_env_export
  local f
  if _fg_read_pid server >/dev/null; then
    _fg_die "the server is running; stop it before resetting its database" || return 1
  fi
  rm -f "$PREFECT_HOME/prefect.db" "$PREFECT_HOME/prefect.db-wal" "$PREFECT_HOME/prefect.db-shm" \
    "$FG_PREFECT_RUN_DIR/deployed.stamp"
  for f in server worker setup; do
    if [[ -f "$FG_PREFECT_RUN_DIR/logs/$f.log" ]]; then
      mv -f "$FG_PREFECT_RUN_DIR/logs/$f.log" "$FG_PREFECT_RUN_DIR/logs/$f.previous.log"
    fi
  done
  _fg_log "database and logs reset ($PREFECT_HOME)"
}

# ---------------------------------------------------------------------------------------
# work pool, deployments

prefect_env_pool() {
  prefect_env_export
  if _fg_http_ok "$FG_PREFECT_API_URL/work_pools/$FG_PREFECT_POOL"; then return 0; fi
  "$FG_PREFECT_VENV/bin/prefect" work-pool create "$FG_PREFECT_POOL" --type process \
    >>"$FG_PREFECT_RUN_DIR/logs/setup.log" 2>&1 \
    || _fg_http_ok "$FG_PREFECT_API_URL/work_pools/$FG_PREFECT_POOL" \
    || _fg_die "could not create work pool $FG_PREFECT_POOL; see $FG_PREFECT_RUN_DIR/logs/setup.log" || return 1
  _fg_log "work pool $FG_PREFECT_POOL (process) created"
}

prefect_env_deploy() {
  prefect_env_export
  local stamp="$FG_PREFECT_RUN_DIR/deployed.stamp" sum d ok=1
  local names=(demo-flow/demo demo-flow/light flaky-flow/flaky parent-flow/parent)
  [[ -n "$FG_PREFECT_IDLE_POOL" ]] && names+=(demo-flow/idle)
  sum="$(cat "$FG_PREFECT_FLOWS_DIR"/*.py | cksum) $FG_PREFECT_POOL $FG_PREFECT_IDLE_POOL $FG_PREFECT_FLOWS_DIR $FG_PREFECT_VENV"
  # Skip when the same flows were deployed to this server's database and they still exist.
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then
    for d in "${names[@]}"; do
      _fg_http_ok "$FG_PREFECT_API_URL/deployments/name/$d" || { ok=0; break; }
    done
    ((ok)) && return 0
  fi
  # shellcheck disable=SC2086
  "$FG_PREFECT_VENV/bin/python" "$FG_PREFECT_FLOWS_DIR/deploy.py" "$FG_PREFECT_POOL" $FG_PREFECT_IDLE_POOL \
    >>"$FG_PREFECT_RUN_DIR/logs/setup.log" 2>&1 \
    || _fg_die "deploying the demo flows failed; see $FG_PREFECT_RUN_DIR/logs/setup.log" || return 1
  printf '%s' "$sum" >"$stamp"
  _fg_log "deployed ${names[*]} (pool $FG_PREFECT_POOL${FG_PREFECT_IDLE_POOL:+; idle on $FG_PREFECT_IDLE_POOL})"
}

# ---------------------------------------------------------------------------------------
# worker

_fg_worker_name() { printf 'floodgate-worker-%s' "$FG_PREFECT_PORT"; }

prefect_env_worker_online() {
  "$FG_PREFECT_VENV/bin/python" - "$FG_PREFECT_API_URL" "$FG_PREFECT_POOL" "$(_fg_worker_name)" <<'PY' 2>/dev/null
import json, sys, urllib.request
api, pool, name = sys.argv[1:4]
req = urllib.request.Request(f"{api}/work_pools/{pool}/workers/filter", data=b"{}",
                             headers={"Content-Type": "application/json"}, method="POST")
workers = json.load(urllib.request.urlopen(req, timeout=5))
sys.exit(0 if any(w["name"] == name and w.get("status") == "ONLINE" for w in workers) else 1)
PY
}

prefect_env_worker_start() {
  prefect_env_export
  local pid start
  if pid="$(_fg_read_pid worker)"; then return 0; fi
  _fg_log "starting process worker on pool $FG_PREFECT_POOL (limit $FG_PREFECT_WORKER_LIMIT)"
  # A small supervisor keeps the worker up: Prefect's worker exits for good ("Service exceeded
  # error threshold") after a run of failed polls, e.g. while its server is down or answers
  # 5xx for a while. The supervisor's PID is the one recorded; stopping it stops the worker.
  (
    cd "$FG_PREFECT_RUN_DIR" || exit 1
    exec bash -c '
      child=""
      trap '"'"'[[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0'"'"' TERM INT
      while :; do
        "$@" </dev/null &
        child=$!
        wait "$child"
        rc=$?
        echo "[prefect-env] $(date -u +%FT%TZ) worker exited with status $rc; restarting it in 3 s"
        sleep 3
      done' supervise "$FG_PREFECT_VENV/bin/prefect" worker start --pool "$FG_PREFECT_POOL" \
      --type process --name "$(_fg_worker_name)" --limit "$FG_PREFECT_WORKER_LIMIT" \
      --install-policy never </dev/null >>"$FG_PREFECT_RUN_DIR/logs/worker.log" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$FG_PREFECT_RUN_DIR/worker.pid"
  start=$SECONDS
  until prefect_env_worker_online; do
    if ! _fg_pid_alive "$pid"; then
      _fg_log "the worker exited; last lines of $FG_PREFECT_RUN_DIR/logs/worker.log:"
      tail -n 30 "$FG_PREFECT_RUN_DIR/logs/worker.log" >&2 || true
      rm -f "$FG_PREFECT_RUN_DIR/worker.pid"
      return 1
    fi
    if ((SECONDS - start > FG_PREFECT_START_TIMEOUT)); then
      _fg_die "the worker did not come online in ${FG_PREFECT_START_TIMEOUT}s; see $FG_PREFECT_RUN_DIR/logs/worker.log" || return 1
    fi
    sleep 0.5
  done
  _fg_log "worker $(_fg_worker_name) online (pid $pid)"
}

prefect_env_worker_stop() {
  prefect_env_export
  local pid
  if pid="$(_fg_read_pid worker)"; then
    _fg_kill_tree "$pid" 10
    _fg_log "worker stopped (pid $pid)"
  fi
  rm -f "$FG_PREFECT_RUN_DIR/worker.pid"
}

# ---------------------------------------------------------------------------------------
# all together

prefect_env_up() {
  prefect_env_venv || return 1
  prefect_env_server_start || return 1
  prefect_env_pool || return 1
  prefect_env_deploy || return 1
  prefect_env_worker_start || return 1
}

prefect_env_down() {
  prefect_env_worker_stop
  prefect_env_server_stop
}

prefect_env_status() {
  prefect_env_export
  local pid
  if pid="$(_fg_read_pid server)"; then
    if prefect_env_server_healthy; then echo "server: running (pid $pid) $FG_PREFECT_API_URL"
    else echo "server: starting or unhealthy (pid $pid)"; fi
  else
    echo "server: stopped"
  fi
  if pid="$(_fg_read_pid worker)"; then echo "worker: running (pid $pid) pool $FG_PREFECT_POOL"
  else echo "worker: stopped"; fi
  echo "logs:   $FG_PREFECT_RUN_DIR/logs"
}

# ---------------------------------------------------------------------------------------
# command-line use

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case "${1:-up}" in
    up) prefect_env_up ;;
    down | stop) prefect_env_down ;;
    status) prefect_env_status ;;
    venv) prefect_env_venv ;;
    server-start) prefect_env_server_start ;;
    server-stop) prefect_env_server_stop ;;
    worker-start) prefect_env_worker_start ;;
    worker-stop) prefect_env_worker_stop ;;
    pool) prefect_env_pool ;;
    reset-db) prefect_env_reset_db ;;
    deploy) prefect_env_deploy ;;
    env) prefect_env_print ;;
    *)
      echo "usage: $0 up|down|status|venv|server-start|server-stop|worker-start|worker-stop|pool|deploy|reset-db|env" >&2
      exit 2
      ;;
  esac
fi
