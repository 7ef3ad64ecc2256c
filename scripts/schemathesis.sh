#!/usr/bin/env bash
# The OpenAPI conformance lane: schemathesis (PyPI, pinned, in .venv-schemathesis) against a live
# floodgated with the fake Prefect, from proto/openapi.yaml, stateful links included
# (tests/schemathesis/run.py). Kept short for CI: ST_MAX_EXAMPLES (default 10) examples per
# operation. Needs FLOODGATED_BIN and FAKE_PREFECT_BIN (as the integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${FLOODGATE_ST_VENV:-$ROOT/.venv-schemathesis}"
if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/schemathesis/requirements.txt
fi
export FLOODGATED_BIN="${FLOODGATED_BIN:-$ROOT/build/ci/service/floodgated}"
export FAKE_PREFECT_BIN="${FAKE_PREFECT_BIN:-$ROOT/build/ci/bin/fake-prefect}"
exec timeout 900 "$VENV/bin/python" tests/schemathesis/run.py "$@"
