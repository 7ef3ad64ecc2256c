#!/usr/bin/env bash
# The postgres lane of the test command: starts a throw-away PostgreSQL cluster
# (scripts/pg-cluster.sh), runs the store contract and PostgreSQL-only unit tests
# (test_store_postgres) and the integration tests of floodgated on PostgreSQL
# (tests/integration/test_postgres.py) and of several replicas sharing it
# (tests/integration/test_replicas.py) against it, and stops and removes the cluster, also on
# failure. About a minute on 2 cores.
# Needs: the ci build (build/ci), FLOODGATED_BIN and FAKE_PREFECT_BIN, and the test venv
# (FLOODGATE_TEST_VENV, default .venv-test). Extra pytest flags: PYTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${FLOODGATE_TEST_VENV:-$ROOT/.venv-test}"
export FLOODGATED_BIN="${FLOODGATED_BIN:-$ROOT/build/ci/service/floodgated}"
export FAKE_PREFECT_BIN="${FAKE_PREFECT_BIN:-$ROOT/build/ci/bin/fake-prefect}"

trap 'bash scripts/pg-cluster.sh stop' EXIT
FLOODGATE_TEST_PG_URL=$(bash scripts/pg-cluster.sh start)
export FLOODGATE_TEST_PG_URL
# test_postgres.py restarts the server mid-batch with this.
export FLOODGATE_TEST_PG_RESTART="bash $ROOT/scripts/pg-cluster.sh restart"
echo "postgres lane: cluster at $(sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' <<<"$FLOODGATE_TEST_PG_URL")"

status=0
echo "-- store tests on PostgreSQL (test_store_postgres)"
build/ci/tests/unit/test_store_postgres --gtest_brief=1 || status=1
echo "-- floodgated on PostgreSQL, one and several replicas (test_postgres.py, test_replicas.py)"
"$VENV/bin/python" -m pytest tests/integration/test_postgres.py tests/integration/test_replicas.py \
  -q ${PYTEST_ARGS:-} || status=1
exit $status
