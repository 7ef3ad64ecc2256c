#!/usr/bin/env bash
# e2e.sh — run floodgate's end-to-end tests (tests/e2e) against a real Prefect server.
#
#   scripts/e2e.sh                 # all cases
#   scripts/e2e.sh -k cancel -x    # extra arguments go to pytest
#
# Installs Prefect (pinned in scripts/prefect-env.sh) and pytest into the Prefect venv, then
# runs pytest there. The tests start their own Prefect server + worker (port 4210 unless
# FG_E2E_PREFECT_PORT is set) and a floodgated per test; floodgated must be built already
# (build/ci, build/release or build/debug; or set FLOODGATED).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FG_PREFECT_EXTRA_PIP="-r $ROOT/tests/e2e/requirements.txt"
# shellcheck source=prefect-env.sh
source "$ROOT/scripts/prefect-env.sh"
prefect_env_venv
if ! "$FG_PREFECT_VENV/bin/python" -c 'import pytest' 2>/dev/null; then
  echo "pytest is missing from $FG_PREFECT_VENV" >&2
  exit 1
fi
cd "$ROOT/tests/e2e"
exec "$FG_PREFECT_VENV/bin/python" -m pytest -v -s -p no:cacheprovider "$@"
