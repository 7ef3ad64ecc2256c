#!/usr/bin/env bash
# The chart lane of the test command: the Helm chart, the Dockerfile and the alert rules.
#   - helm is built from the Go module proxy once and kept in /usr/local/lib/floodgate/tools;
#   - a venv (.venv-chart) holds kubernetes-validate (Kubernetes' JSON schemas, offline) and pytest;
#   - tests/chart: helm lint, helm template with the default values and every file in
#     charts/floodgate/ci/ and examples/, each manifest validated, security and unit
#     assertions (the PostgreSQL mode: test_chart_postgresql.py), the
#     Dockerfile's steps against the ones CI runs, scripts/runtime-libs.sh on the built binary;
#   - promtool check rules / test rules on the alert rules (Debian's prometheus package).
# Needs floodgated built (build/ci/service/floodgated, or FLOODGATED_BIN). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="/usr/local/go/bin:$PATH"
HELM_VERSION=v3.22.0

# prometheus brings promtool (here) and the server (the dashboard lane).
bash scripts/observability-deps.sh  # prometheus (promtool, server), chromium

# helm is kept per version outside the checkout (next to the pinned Go that install-deps.sh
# fetches), so a new clone on the same machine does not build it again (minutes on 2 cores);
# .tools/ in the checkout when that folder cannot be written (not root).
TOOLS="${FLOODGATE_TOOLS_DIR:-/usr/local/lib/floodgate/tools}/helm-$HELM_VERSION"
if ! mkdir -p "$TOOLS" 2>/dev/null || [[ ! -w "$TOOLS" ]]; then
  TOOLS="$ROOT/.tools/helm-$HELM_VERSION"
  mkdir -p "$TOOLS"
fi
if [[ ! -x "$TOOLS/helm" ]]; then
  echo "building helm $HELM_VERSION with $(go version | cut -d' ' -f3) (once; kept in $TOOLS)"
  GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
export HELM_BIN="$TOOLS/helm"
"$HELM_BIN" version --short

VENV="$ROOT/.venv-chart"
if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/chart/requirements.txt

export FLOODGATED_BIN="${FLOODGATED_BIN:-$ROOT/build/ci/service/floodgated}"
status=0
echo "-- runtime libraries of $FLOODGATED_BIN (the Dockerfile's runtime packages)"
bash scripts/runtime-libs.sh "$FLOODGATED_BIN" || status=1
echo "-- promtool"
promtool check rules charts/floodgate/rules/floodgate-alerts.yaml || status=1
promtool test rules tests/chart/alerts-test.yaml || status=1
echo "-- chart tests"
"$VENV/bin/python" -m pytest tests/chart -q || status=1
exit $status
