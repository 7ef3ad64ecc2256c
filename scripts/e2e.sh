#!/usr/bin/env bash
# e2e.sh — run floodgate's end-to-end tests (tests/e2e) against a real Prefect server.
#
#   scripts/e2e.sh                 # all cases, the busy-Prefect case included (tests/e2e/README.md
#                                  # has the measured durations; venv cached)
#   scripts/e2e.sh -k cancel -x    # extra arguments go to pytest
#   FG_E2E_BUSY=0 scripts/e2e.sh   # without the busy-Prefect case (tests/e2e/test_e2e_busy.py)
#
# Installs Prefect (pinned in scripts/prefect-env.sh) and pytest into the Prefect venv, then
# runs pytest there. The tests start their own Prefect server + worker (port 4210 unless
# FG_E2E_PREFECT_PORT is set, run dir .run/e2e-prefect unless FG_E2E_RUN_DIR) and a
# floodgated per test; floodgated must be built already (build/ci, build/release or
# build/debug; or set FLOODGATED). The server and worker are stopped at the end, also when
# pytest is interrupted, unless FG_E2E_KEEP_PREFECT=1 (faster reruns; stop them later with
# `FG_PREFECT_PORT=4210 FG_PREFECT_RUN_DIR=.run/e2e-prefect bash scripts/prefect-env.sh down`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FG_PREFECT_EXTRA_PIP="-r $ROOT/tests/e2e/requirements.txt"
# The e2e Prefect's run dir: the venv's pip log goes there too (not into the demo's).
export FG_PREFECT_RUN_DIR="${FG_E2E_RUN_DIR:-$ROOT/.run/e2e-prefect}"
# shellcheck source=prefect-env.sh
source "$ROOT/scripts/prefect-env.sh"
prefect_env_venv
if ! "$FG_PREFECT_VENV/bin/python" -c 'import pytest' 2>/dev/null; then
  echo "pytest is missing from $FG_PREFECT_VENV" >&2
  exit 1
fi

# Safety net: whatever happens to pytest, stop the server and worker it started (by the PIDs
# recorded in the run dir; prefect-env.sh never kills by name).
stop_prefect() {
  if [[ "${FG_E2E_KEEP_PREFECT:-0}" != "1" ]]; then
    FG_PREFECT_PORT="${FG_E2E_PREFECT_PORT:-4210}" FG_PREFECT_RUN_DIR="$FG_PREFECT_RUN_DIR" \
      bash "$ROOT/scripts/prefect-env.sh" down >/dev/null 2>&1 || true
  fi
}
trap stop_prefect EXIT
trap 'exit 130' INT TERM

cd "$ROOT/tests/e2e"
set +e
"$FG_PREFECT_VENV/bin/python" -m pytest -v -s -p no:cacheprovider "$@"
rc=$?
set -e
exit $rc
