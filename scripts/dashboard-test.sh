#!/usr/bin/env bash
# The dashboard lane of the test command: the Grafana dashboard (charts/floodgate/dashboards)
# is the generator's output and every panel's query, evaluated by a real Prometheus (Debian's
# package) that scrapes floodgated while it launches a batch against the fake Prefect with faults
# on, returns series. Needs floodgated and the fake Prefect built (FLOODGATED_BIN,
# FAKE_PREFECT_BIN, as scripts/test.sh exports them). FG_DASHBOARD_PNG=path also draws the run
# (that is how docs/img/dashboard-run.png is made).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/observability-deps.sh  # prometheus (promtool, server), chromium
VENV="$ROOT/.venv-dashboard"
if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/dashboard/requirements.txt
export FLOODGATED_BIN="${FLOODGATED_BIN:-$ROOT/build/ci/service/floodgated}"
export FAKE_PREFECT_BIN="${FAKE_PREFECT_BIN:-$ROOT/build/ci/bin/fake-prefect}"
"$VENV/bin/python" -m pytest tests/dashboard -q
