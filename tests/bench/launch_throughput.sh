#!/usr/bin/env bash
# Launch throughput of floodgated against its ceilings, side by side in one run (issue 2, item 10).
#
#   tests/bench/launch_throughput.sh            # 3 repetitions, 50,000-run batches
#   REPS=1 RUNS=20000 SECONDS_PER=5 tests/bench/launch_throughput.sh   # a quick look
#   FLOODGATED_BEFORE=/path/to/older/floodgated REPS=6 tests/bench/launch_throughput.sh
#                                               # two builds side by side (see below)
#
# Against one fake Prefect on loopback (tests/fake_prefect, bulk disabled, no faults), each
# repetition measures, one after the other:
#   wrk        wrk -t2 -c64 with tests/fake_prefect/wrk/create.lua (fresh idempotency key each)
#   loop       bench_cpprest_loop, 64 in flight, one create body (no key: every POST creates)
#   fg-fixed   floodgated --bulk false --rate off --adaptive false --max-in-flight 64, one batch of
#              RUNS runs with track false; rate = RUNS / (finished_at - created_at) of the batch
#   fg-adapt   the same with the default adaptive limit (--bulk false only)
# and then, once per repetition, the time to accept a 100,000-run batch (curl time_total of the
# POST) and floodgated's resident memory (VmRSS before, VmHWM after the POST and after the batch).
# The fake is reset between measurements so its store does not grow across them.
#
# With FLOODGATED_BEFORE set (a second floodgated binary, e.g. built from an older commit), each
# repetition measures only fg-before (that binary), loop and fg-after ($FLOODGATED), all three
# at a fixed CONC in flight with single creates, before and after swapping places from one
# repetition to the next (odd: before, loop, after; even: after, loop, before), so that drift in
# the machine's load falls on both alike; the raw results go to launch_split_ab.json (or
# $RESULT_NAME.json).
#
# Needs: go, wrk, curl, jq, python3, and the built floodgated and bench_cpprest_loop:
#   cmake --build build/ci --target floodgated bench_cpprest_loop
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/ci}
FLOODGATED=${FLOODGATED:-$BUILD/service/floodgated}
LOOP=${LOOP:-$BUILD/tests/bench/bench_cpprest_loop}
FLOODGATED_BEFORE=${FLOODGATED_BEFORE:-}
FAKE=${FAKE:-}
REPS=${REPS:-3}
RUNS=${RUNS:-50000}
BIG_RUNS=${BIG_RUNS:-100000}
SECONDS_PER=${SECONDS_PER:-10}
CONC=${CONC:-64}
FAKE_PORT=${FAKE_PORT:-18201}
FG_PORT=${FG_PORT:-18081}
WORK=${WORK:-/tmp/bench-launch}
DEPLOYMENT_ID=00000000-0000-4000-8000-000000000001
FAKE_URL=http://127.0.0.1:$FAKE_PORT
CREATE_URL=$FAKE_URL/api/deployments/$DEPLOYMENT_ID/create_flow_run
FG_URL=http://127.0.0.1:$FG_PORT

for tool in wrk curl jq python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
[[ -x $FLOODGATED ]] || { echo "missing $FLOODGATED (build it first)" >&2; exit 2; }
[[ -z $FLOODGATED_BEFORE || -x $FLOODGATED_BEFORE ]] || { echo "missing $FLOODGATED_BEFORE" >&2; exit 2; }
[[ -x $LOOP ]] || { echo "missing $LOOP: cmake --build $BUILD --target bench_cpprest_loop" >&2; exit 2; }
# The fake is built from this checkout at every run (incremental), never reused from elsewhere.
if [[ -z $FAKE ]]; then
  FAKE=$BUILD/bin/fake-prefect
  mkdir -p "$BUILD/bin"
  (cd "$ROOT/tests/fake_prefect" && go build -o "$FAKE" .)
fi

rm -rf "$WORK"
mkdir -p "$WORK"
FAKE_PID=""
FG_PID=""
cleanup() {
  [[ -n $FG_PID ]] && kill "$FG_PID" 2>/dev/null || true
  [[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_http, wait_batch_end
source "$ROOT/tests/bench/bench_lib.sh"

fake_reset() {
  curl -fs -XPOST "$FAKE_URL/_fake/reset" >/dev/null
  curl -fs -XPOST "$FAKE_URL/_fake/config" -d '{"bulk_enabled":false}' >/dev/null
}

FG_BIN=$FLOODGATED
start_floodgated() {  # extra flags...   (runs $FG_BIN)
  rm -f "$WORK"/fg.db*
  "$FG_BIN" --listen "127.0.0.1:$FG_PORT" --prefect-api-url "$FAKE_URL/api" \
    --db "sqlite://$WORK/fg.db" --log-level warn "$@" >>"$WORK/floodgated.log" 2>&1 &
  FG_PID=$!
  wait_http "$FG_URL/healthz"
  kill -0 "$FG_PID" 2>/dev/null || { echo "floodgated exited: is port $FG_PORT taken?" >&2; exit 2; }
}

stop_floodgated() {
  kill -TERM "$FG_PID" 2>/dev/null || true
  wait "$FG_PID" 2>/dev/null || true
  FG_PID=""
}

cpu_ticks() {  # pid -> user+system CPU time in clock ticks (/proc/PID/stat fields 14 and 15)
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

kb() {  # pid field  -> kB value from /proc/PID/status
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

# Measures one floodgated launch of RUNS runs; prints a JSON line.
fg_launch() {  # label extra-flags...
  local label=$1
  shift
  fake_reset
  start_floodgated "$@"
  local rss0 id state t0 t1
  rss0=$(kb "$FG_PID" VmRSS)
  t0=$(date +%s.%N)
  local fake_cpu0 fg_cpu_posted fg_cpu_end fake_cpu1
  fake_cpu0=$(cpu_ticks "$FAKE_PID")
  id=$(curl -fs -XPOST "$FG_URL/v1/batches" -H 'Content-Type: application/json' \
    --data-binary "@$WORK/batch_$RUNS.json" | jq -r .id)
  fg_cpu_posted=$(cpu_ticks "$FG_PID")
  local body
  body=$(wait_batch_end "$FG_URL" "$id")
  t1=$(date +%s.%N)
  fg_cpu_end=$(cpu_ticks "$FG_PID")
  fake_cpu1=$(cpu_ticks "$FAKE_PID")
  local hwm
  hwm=$(kb "$FG_PID" VmHWM)
  local limit
  limit=$(curl -fs "$FG_URL/metrics" | awk '$1 == "floodgate_prefect_in_flight_limit" {print $2}')
  curl -fs "$FAKE_URL/_fake/stats" >"$WORK/stats.json"
  curl -fs "$FAKE_URL/_fake/runs" >"$WORK/runs.json"
  stop_floodgated
  echo "$body" >"$WORK/batch.json"
  python3 - "$label" "$RUNS" "$t0" "$t1" "$rss0" "$hwm" "$WORK/stats.json" "$WORK/runs.json" \
    "$WORK/batch.json" "$limit" "$((fg_cpu_end - fg_cpu_posted))" "$((fake_cpu1 - fake_cpu0))" <<'EOF'
import json, os, sys
from datetime import datetime
label, runs, t0, t1, rss0, hwm, stats_path, runs_path, batch_path, limit, fg_cpu, fake_cpu = sys.argv[1:]
tck = os.sysconf("SC_CLK_TCK")
b = json.load(open(batch_path))
st = json.load(open(stats_path))
created = [r["created"] for r in json.load(open(runs_path))["runs"]]
def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
span = ts(b["finished_at"]) - ts(b["created_at"])
fake_span = ts(max(created)) - ts(min(created)) if created else float("nan")
print(json.dumps({
    "label": label, "runs": int(runs), "state": b["state"], "counts": {k: v for k, v in b["counts"].items() if v},
    "batch_s": span, "rate": int(runs) / span, "wall_s": float(t1) - float(t0),
    "fake_created": st["created"], "fake_creates": st["requests"].get("create_flow_run", 0),
    "fake_existing": st["existing"], "fake_span_s": fake_span,
    "fake_rate": len(created) / fake_span if fake_span > 0 else None,
    "rss0_mb": int(rss0) / 1024, "hwm_mb": int(hwm) / 1024, "limit_at_end": float(limit or "nan"),
    "fake_peak_in_flight": st["peak_in_flight"],
    # CPU per launched run: floodgated from the POST's answer to COMPLETED (launch work only),
    # and the fake over the whole measurement.
    "client_cpu_us": int(fg_cpu) / tck / int(runs) * 1e6, "fake_cpu_us": int(fake_cpu) / tck / int(runs) * 1e6}))
EOF
}

wrk_run() {
  fake_reset
  local out
  out=$(wrk -t2 -c"$CONC" -d"${SECONDS_PER}s" -s "$ROOT/tests/fake_prefect/wrk/create.lua" "$CREATE_URL")
  echo "$out" >>"$WORK/wrk.log"
  local rps non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "{\"label\":\"wrk\",\"rate\":$rps,\"non2xx\":${non2xx:-0}}"
}

loop_run() {
  fake_reset
  local out
  local fake_cpu0 fake_cpu1
  fake_cpu0=$(cpu_ticks "$FAKE_PID")
  out=$(/usr/bin/time -f "%U %S" -o "$WORK/loop.time" "$LOOP" --url "$CREATE_URL" \
    --concurrency "$CONC" --seconds "$SECONDS_PER" \
    --body '{"parameters":{"x":1,"name":"item"},"tags":["bench"]}')
  fake_cpu1=$(cpu_ticks "$FAKE_PID")
  echo "$out" >>"$WORK/loop.log"
  local rps failed ok
  rps=$(sed -n 's/.*requests\/s=\([0-9.]*\).*/\1/p' <<<"$out")
  failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$out")
  ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out")
  python3 -c "
import os, sys
u, s = map(float, open('$WORK/loop.time').read().split()[-2:])
ok, tck = $ok, os.sysconf('SC_CLK_TCK')
print('{\"label\":\"loop\",\"rate\":$rps,\"failed\":$failed,\"client_cpu_us\":%.2f,\"fake_cpu_us\":%.2f}'
      % ((u + s) / ok * 1e6, ($fake_cpu1 - $fake_cpu0) / tck / ok * 1e6))"
}

accept_big() {
  fake_reset
  start_floodgated --bulk false
  local rss0 out code t id hwm_post state body
  rss0=$(kb "$FG_PID" VmRSS)
  out=$(curl -s -o "$WORK/accept.json" -w '%{http_code} %{time_total}' -XPOST "$FG_URL/v1/batches" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/batch_$BIG_RUNS.json")
  code=${out% *}
  t=${out#* }
  hwm_post=$(kb "$FG_PID" VmHWM)
  id=$(jq -r .id "$WORK/accept.json")
  body=$(wait_batch_end "$FG_URL" "$id")
  state=$(jq -r .state <<<"$body")
  local hwm_end rss_end
  hwm_end=$(kb "$FG_PID" VmHWM)
  rss_end=$(kb "$FG_PID" VmRSS)
  stop_floodgated
  echo "{\"label\":\"accept100k\",\"runs\":$BIG_RUNS,\"status\":$code,\"accept_s\":$t,\"rss0_mb\":$((rss0 / 1024)),\"hwm_after_post_mb\":$((hwm_post / 1024)),\"hwm_after_batch_mb\":$((hwm_end / 1024)),\"rss_after_batch_mb\":$((rss_end / 1024)),\"final_state\":\"$state\"}"
}

# Batch bodies, generated once.
for n in "$RUNS" "$BIG_RUNS"; do
  python3 - "$n" >"$WORK/batch_$n.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
runs = [{"parameters": {"x": i, "name": "item"}} for i in range(n)]
json.dump({"deployment": "demo-flow/demo", "runs": runs, "tags": ["bench"], "track": False}, sys.stdout,
          separators=(",", ":"))
EOF
done

"$FAKE" --listen "127.0.0.1:$FAKE_PORT" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
wait_http "$FAKE_URL/api/health"
# Another process answering on the port (a fake left over from an earlier run) would be measured
# instead of this one.
kill -0 "$FAKE_PID" 2>/dev/null || { echo "the fake exited: is port $FAKE_PORT taken?" >&2; exit 2; }

BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# launch_throughput: nproc=$(nproc) load=$BENCH_LOAD_START runs=$RUNS conc=$CONC reps=$REPS"
echo "# batch body sizes: $(stat -c '%n %s' "$WORK"/batch_*.json | sed "s|$WORK/||g" | tr '\n' ' ')"
: >"$WORK/results.jsonl"
record() {  # rep: appends $WORK/line, tagged with the repetition and the load, to the results
  jq -c ". + {rep: $1, load: $LOAD_AT_START}" "$WORK/line" | tee -a "$WORK/results.jsonl"
}
# Waits (up to MAX_WAIT_S) for the 1-minute load average to fall under MAX_LOAD: the machine
# is shared, and a measurement taken while other work runs says little.
wait_quiet() {
  local waited=0
  while awk -v m="${MAX_LOAD:-1.5}" '{exit !($1 > m)}' /proc/loadavg && ((waited < ${MAX_WAIT_S:-900})); do
    sleep 10
    waited=$((waited + 10))
  done
  echo "# waited ${waited}s for load < ${MAX_LOAD:-1.5}"
}

if [[ -n $FLOODGATED_BEFORE ]]; then
  fixed=(--bulk false --rate off --adaptive false --max-in-flight "$CONC")
  before() { FG_BIN=$FLOODGATED_BEFORE fg_launch fg-before "${fixed[@]}" >"$WORK/line" && record "$1"; }
  after() { FG_BIN=$FLOODGATED fg_launch fg-after "${fixed[@]}" >"$WORK/line" && record "$1"; }
  for rep in $(seq 1 "$REPS"); do
    wait_quiet
    LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
    echo "# repetition $rep, load $(cut -d' ' -f1-3 /proc/loadavg)"
    if ((rep % 2)); then before "$rep"; else after "$rep"; fi
    loop_run >"$WORK/line" && record "$rep"
    if ((rep % 2)); then after "$rep"; else before "$rep"; fi
  done
  BENCH_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "# load at end: $BENCH_LOAD_END"
  BENCH_LOAD_START=$BENCH_LOAD_START BENCH_LOAD_END=$BENCH_LOAD_END python3 "$ROOT/tests/bench/split_ab_report.py" "$WORK/results.jsonl" "$FLOODGATED_BEFORE" "$FLOODGATED"
  exit
fi

for rep in $(seq 1 "$REPS"); do
  wait_quiet
  LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
  echo "# repetition $rep, load $(cut -d' ' -f1-3 /proc/loadavg)"
  wrk_run >"$WORK/line" && record "$rep"
  loop_run >"$WORK/line" && record "$rep"
  fg_launch fg-fixed --bulk false --rate off --adaptive false --max-in-flight "$CONC" >"$WORK/line"
  record "$rep"
  fg_launch fg-adapt --bulk false >"$WORK/line" && record "$rep"
  accept_big >"$WORK/line" && record "$rep"
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

BENCH_LOAD_START=$BENCH_LOAD_START python3 - "$WORK/results.jsonl" "$ROOT" <<'EOF'
import json, os, statistics, sys
sys.path.insert(0, sys.argv[2] + "/tests/bench")
import benchlib as bl
rows = [json.loads(l) for l in open(sys.argv[1])]
prov = bl.provenance()
prov["load_start"] = os.environ.get("BENCH_LOAD_START", prov["load_start"])  # the load when the run began
argv = ["tests/bench/launch_throughput.sh"] + [f"{k}={os.environ[k]}" for k in ("REPS", "RUNS", "MAX_WAIT_S")
                                               if os.environ.get(k)]
print("raw results:", bl.write_result("launch_throughput", {"rows": rows, "argv": argv, "provenance": prov}))
def vals(label, key):
    return [r[key] for r in rows if r["label"] == label and r.get(key) is not None]
def med(label, key):
    v = vals(label, key)
    return statistics.median(v) if v else float("nan")
def fmt(label, key, unit=""):
    v = vals(label, key)
    return f"{statistics.median(v):,.1f}{unit} (min {min(v):,.1f}, max {max(v):,.1f})" if v else "n/a"
print()
print(f"{'measurement':<44} {'median req/s (min, max)':<40} {'/loop':>6} {'/wrk':>6}")
loop, wrk = med("loop", "rate"), med("wrk", "rate")
for label, name in [("wrk", "wrk -t2 -c64 (raw ceiling)"), ("loop", "bench_cpprest_loop, 64 in flight"),
                    ("fg-fixed", "floodgated, fixed 64 in flight (batch ts)"),
                    ("fg-adapt", "floodgated, default adaptive (batch ts)")]:
    print(f"{name:<44} {fmt(label, 'rate'):<40} {med(label, 'rate') / loop:>6.2f} {med(label, 'rate') / wrk:>6.2f}")
for label, name in [("fg-fixed", "  fixed 64, fake's first..last create"), ("fg-adapt", "  adaptive, fake's first..last create")]:
    print(f"{name:<44} {fmt(label, 'fake_rate'):<40} {med(label, 'fake_rate') / loop:>6.2f} {med(label, 'fake_rate') / wrk:>6.2f}")
# Per-repetition ratios (measured back to back, so less exposed to load drift).
print()
print("CPU per request (load-independent): client = the loop program / floodgated (launch only), "
      "fake = the fake Prefect")
for label in ("loop", "fg-fixed", "fg-adapt"):
    print(f"  {label:<9} client {fmt(label, 'client_cpu_us', ' us')}   fake {fmt(label, 'fake_cpu_us', ' us')}")
lc = med("loop", "client_cpu_us")
for label in ("fg-fixed", "fg-adapt"):
    print(f"  {label}: floodgated CPU per launch / loop CPU per request = {med(label, 'client_cpu_us') / lc:.2f}")
for label in ("fg-fixed", "fg-adapt"):
    ratios = []
    for rep in sorted({r["rep"] for r in rows}):
        f = [r["rate"] for r in rows if r["label"] == label and r["rep"] == rep]
        l = [r["rate"] for r in rows if r["label"] == "loop" and r["rep"] == rep]
        if f and l:
            ratios.append(f[0] / l[0])
    if ratios:
        print(f"{label}/loop per repetition: " + ", ".join(f"{x:.2f}" for x in ratios))
for label in ("fg-fixed", "fg-adapt"):
    bad = [r for r in rows if r["label"] == label and (r["fake_created"] != r["runs"] or r["state"] != "COMPLETED")]
    print(f"{label}: fake created == runs and batch COMPLETED in every repetition: {not bad}; "
          f"creates sent {vals(label, 'fake_creates')}; peak RSS MB {fmt(label, 'hwm_mb')}; "
          f"in-flight limit at the end {vals(label, 'limit_at_end')}, fake's peak in flight {vals(label, 'fake_peak_in_flight')}")
print()
print(f"accept a {int(vals('accept100k', 'runs')[0]) if vals('accept100k', 'runs') else 100000:,}-run batch: time {fmt('accept100k', 'accept_s', ' s')}")
print(f"  statuses {vals('accept100k', 'status')}; RSS before {fmt('accept100k', 'rss0_mb', ' MB')}")
print(f"  peak RSS after POST {fmt('accept100k', 'hwm_after_post_mb', ' MB')}; after the batch launched {fmt('accept100k', 'hwm_after_batch_mb', ' MB')}")
ok_rate = med("fg-fixed", "rate") >= 0.5 * loop
print(f"target floodgate >= 0.5 x loop (fixed 64): {'MET' if ok_rate else 'NOT MET'} "
      f"({med('fg-fixed', 'rate') / loop:.2f}); adaptive: {med('fg-adapt', 'rate') / loop:.2f}")
print(f"target accept < 3 s: {'MET' if med('accept100k', 'accept_s') < 3 else 'NOT MET'}; "
      f"RSS < 300 MB: {'MET' if max(vals('accept100k', 'hwm_after_batch_mb')) < 300 else 'NOT MET'}")
EOF
