#!/usr/bin/env bash
# e2e-versions.sh — floodgate's core end-to-end cases against the oldest and the newest
# supported Prefect releases, each in its own virtualenv, one Prefect server at a time.
#
#   scripts/e2e-versions.sh                  # 3.2.15 (oldest) and 3.9.1 (newest)
#   scripts/e2e-versions.sh 3.2.15           # one version
#   scripts/e2e-versions.sh 3.2.15 -- -x     # arguments after -- go to pytest
#   FG_E2E_VERSIONS_DB=postgresql scripts/e2e-versions.sh 3.2.15   # server on PostgreSQL
#
# Per version: venv .venv-prefect-VERSION, run dir .run/e2e-prefect-VERSION, server port
# FG_E2E_VERSIONS_PORT (4230; 4200/4210 belong to the demo and the main e2e suite). The cases
# are FG_E2E_VERSIONS_CASES (a pytest -k expression; default: unknown deployment and schema
# errors, as_subflow under an API parent, cancel_children, and a 50-child batch exactly once).
# floodgated must be built (build/ci, build/release or build/debug; or set FLOODGATED).
#
# FG_E2E_VERSIONS_DB=postgresql runs each Prefect server on PostgreSQL instead of SQLite: a
# throw-away cluster per version (scripts/pg-cluster.sh, FLOODGATE_PG_DIR=build/pg-prefect-VERSION,
# its own free port, so it never meets the postgres lane's build/pg), removed at the end. On
# SQLite a 3.2 server answers hundreds of "database is locked" 503s under the cases' writes.
#
# Old releases do not install as they were on today's PyPI: their loose ranges pick up newer
# dependencies that break them. The pins below are the ones each release needs (found by
# starting its server and worker); docs/compatibility.md records the runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

OLDEST=3.2.15
NEWEST=3.9.1
# 3.2.x: its worker imports importlib_metadata without declaring it, and FastAPI >= 0.116
# (Body(min_items=...) removed) breaks its server at import.
declare -A PINS=(
  [3.2.15]="importlib_metadata fastapi==0.115.12"
  [3.9.1]=""
)

versions=()
pytest_args=()
while (($#)); do
  if [[ "$1" == "--" ]]; then shift; pytest_args=("$@"); break; fi
  versions+=("$1"); shift
done
((${#versions[@]})) || versions=("$OLDEST" "$NEWEST")

cases="${FG_E2E_VERSIONS_CASES:-test_d_ or test_b_as_subflow_with_api_parent or test_c_ or test_a_}"
port="${FG_E2E_VERSIONS_PORT:-4230}"
export FG_E2E_BIG_N="${FG_E2E_BIG_N:-50}"
# A fresh database migrates for minutes on a busy 2-core machine.
export FG_PREFECT_START_TIMEOUT="${FG_PREFECT_START_TIMEOUT:-600}"
db="${FG_E2E_VERSIONS_DB:-sqlite}"
[[ "$db" == sqlite || "$db" == postgresql ]] || {
  echo "e2e-versions: FG_E2E_VERSIONS_DB must be sqlite or postgresql, not '$db'" >&2
  exit 2
}

status=0
summary=()
for v in "${versions[@]}"; do
  start=$(date +%s)
  (
    export FG_PREFECT_VERSION="$v"
    export FG_PREFECT_VENV="$ROOT/.venv-prefect-$v"
    export FG_PREFECT_RUN_DIR="$ROOT/.run/e2e-prefect-$v"
    export FG_E2E_RUN_DIR="$FG_PREFECT_RUN_DIR"
    export FG_E2E_PREFECT_PORT="$port"
    export FG_PREFECT_EXTRA_PIP="pytest>=8 ${PINS[$v]:-}"
    # shellcheck source=prefect-env.sh
    source "$ROOT/scripts/prefect-env.sh"
    prefect_env_venv
    export FLOODGATE_PG_DIR="$ROOT/build/pg-prefect-$v"
    stop_prefect() {
      FG_PREFECT_PORT="$port" bash "$ROOT/scripts/prefect-env.sh" down >/dev/null 2>&1 || true
      if [[ "$db" == postgresql ]]; then bash "$ROOT/scripts/pg-cluster.sh" stop || true; fi
    }
    trap stop_prefect EXIT
    trap 'exit 130' INT TERM
    if [[ "$db" == postgresql ]]; then
      # A fresh cluster: the server migrates an empty database, as it does on a new SQLite file.
      bash "$ROOT/scripts/pg-cluster.sh" stop
      url="$(bash "$ROOT/scripts/pg-cluster.sh" start)"
      export FG_PREFECT_DB_URL="postgresql+asyncpg://${url#postgresql://}"
    fi
    echo "== Prefect $v on $db: $("$FG_PREFECT_VENV/bin/python" -c 'import prefect; print(prefect.__version__)')"
    cd "$ROOT/tests/e2e"
    "$FG_PREFECT_VENV/bin/python" -m pytest -v -s -p no:cacheprovider -k "$cases" \
      ${pytest_args[@]+"${pytest_args[@]}"}
  ) && rc=0 || rc=$?
  summary+=("Prefect $v ($db): $([[ $rc == 0 ]] && echo passed || echo "FAILED ($rc)") in $(($(date +%s) - start)) s")
  [[ $rc == 0 ]] || status=1
done
printf '%s\n' "${summary[@]}"
exit $status
