#!/usr/bin/env bash
# Where floodgated's CPU goes while it launches: perf record of one floodgated launching N runs
# with single creates at a fixed 64 in flight against the fake Prefect (bulk off, no faults),
# from the POST's answer to COMPLETED (docs/benchmarks-history.md §1, "Before and after the engine split").
#
#   N=10000 tests/bench/perf_launch.sh [FLOODGATED]      # then, e.g.:
#   perf report -i /tmp/perf-launch/perf.data --children --sort sym -g none
#
# Needs perf, go, curl, jq, python3. Ports: FAKE_PORT (18612) and FG_PORT (18692).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FG=${1:-$ROOT/build/ci/service/floodgated}
N=${N:-10000}
W=${WORK:-/tmp/perf-launch}
FAKE_PORT=${FAKE_PORT:-18612}
FG_PORT=${FG_PORT:-18692}
rm -rf "$W"
mkdir -p "$W" "$ROOT/build/ci/bin"
(cd "$ROOT/tests/fake_prefect" && go build -o "$ROOT/build/ci/bin/fake-prefect" .)
"$ROOT/build/ci/bin/fake-prefect" --listen "127.0.0.1:$FAKE_PORT" >"$W/fake.log" 2>&1 &
FP=$!
GP=""
trap 'kill $FP 2>/dev/null; [[ -n $GP ]] && kill $GP 2>/dev/null; true' EXIT
# wait_http, wait_batch_end
source "$ROOT/tests/bench/bench_lib.sh"
wait_http "http://127.0.0.1:$FAKE_PORT/api/health"
kill -0 "$FP" || { echo "the fake exited: is port $FAKE_PORT taken?" >&2; exit 2; }
curl -fs -XPOST "http://127.0.0.1:$FAKE_PORT/_fake/config" -d '{"bulk_enabled":false}' >/dev/null
python3 -c "
import json, sys
json.dump({'deployment': 'demo-flow/demo', 'runs': [{'parameters': {'x': i, 'name': 'item'}} for i in range($N)],
           'tags': ['bench'], 'track': False}, sys.stdout)" >"$W/batch.json"
"$FG" --listen "127.0.0.1:$FG_PORT" --prefect-api-url "http://127.0.0.1:$FAKE_PORT/api" \
  --db "sqlite://$W/fg.db" --log-level warn --bulk false --rate off --adaptive false \
  --max-in-flight 64 >"$W/floodgated.log" 2>&1 &
GP=$!
wait_http "http://127.0.0.1:$FG_PORT/healthz"
kill -0 "$GP" || { echo "floodgated exited: is port $FG_PORT taken?" >&2; exit 2; }
id=$(curl -fs -XPOST "http://127.0.0.1:$FG_PORT/v1/batches" -H 'Content-Type: application/json' \
  --data-binary "@$W/batch.json" | jq -r .id)
perf record -F 499 --call-graph dwarf,32768 -p "$GP" -o "$W/perf.data" 2>"$W/perf.err" &
PP=$!
body=$(wait_batch_end "http://127.0.0.1:$FG_PORT" "$id")
kill -INT "$PP"
wait "$PP" || true
jq -c '{state, counts}' <<<"$body"
echo "profile: $W/perf.data"
