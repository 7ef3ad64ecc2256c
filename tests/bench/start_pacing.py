#!/usr/bin/env python3
"""Start pacing benchmark (issue 17): crashes and makespan with and without crash-aware start
pacing, on a fake Prefect that crashes children started in bursts.

    python3 tests/bench/start_pacing.py                       # 400 children, 3 reps of each
    python3 tests/bench/start_pacing.py --children 300 --reps 1 --no-record   # a quick look

The fake is configured as tests/integration/test_start_pacing.py configures it: a run starts
as soon as it is created (SCHEDULED 0 ms, PENDING 0 ms) and runs 500 ms, except that a run
whose start has 8 or more other starts in the second before it crashes 300 ms after starting
(`burst_crash_starts` 8, `crash_after_ms` 300). One floodgated (its defaults, a fresh SQLite
file) per run submits one batch like the test's: `launches_per_second` 20, `burst` 20,
`relaunch_crashed` 3, `start_pacing` true or false. The two settings alternate (on, off, on,
off, ...) so that both see the same machine. Each pair is run with two tolerances:

  tolerance 0     the batch's default: the first child that crashes its 4th run (its
                  relaunches used up) fails the batch; without pacing that is the expected
                  end, and the makespan is the time to that failure;
  tolerance 100%  every child runs to its end whatever happens to the others, so the
                  makespans compare like for like and the children lost (CRASHED after their
                  relaunches) are counted.

Recorded per run: the batch's final state and counts, the runs created on the fake and how many
of them CRASHED, the makespan (submit to the batch's final state, long-polled), the requests the
fake served (less health probes) per child, and the batch's start_pace. Raw results go to
docs/bench-results/start_pacing.json; tests/bench/render_tables.py renders the table in
docs/benchmarks.md from it. Standard library only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

BURSTY = {"scheduled_ms": 0, "pending_ms": 0, "running_ms": 500, "burst_crash_starts": 8,
          "crash_after_ms": 300}
TOLERANCES = {"0": {}, "100%": {"tolerated_failure_percentage": 100}}


def one_run(fake: bl.Fake, args, pacing: bool, tolerance: str, rep: int) -> dict:
    fake.reset({"run_schedule": BURSTY})
    base = bl.fake_api_requests(fake.stats())
    fg = bl.Floodgated(bl.free_port(), fake.url + "/api", args.out)
    load = bl.machine()["load"]
    try:
        batch = {"deployment": "demo-flow/demo",
                 "runs": [{"parameters": {"i": i}} for i in range(args.children)],
                 "limits": {"launches_per_second": 20, "burst": 20},
                 "relaunch_crashed": 3, "start_pacing": pacing, **TOLERANCES[tolerance]}
        t0 = time.monotonic()
        accepted = fg.post_batch(batch)
        final = fg.wait_final(accepted["id"], limit_s=args.limit_s)
        makespan = time.monotonic() - t0
        # Requests up to the batch's end (a batch that failed early goes on following the
        # children it left running; that is not part of its makespan).
        requests = bl.fake_api_requests(fake.stats()) - base
        metrics = fg.metrics()
    finally:
        fg.stop()
    tag = f"floodgate-batch:{accepted['id']}"
    runs = [r for r in fake.runs() if tag in r["tags"]]
    crashed = sum(1 for r in runs if r["state_type"] == "CRASHED")
    counts = {k: v for k, v in final["counts"].items() if v}
    row = {"rep": rep, "pacing": pacing, "tolerance": tolerance, "children": args.children,
           "state": final["state"], "counts": counts, "failures": final.get("failures"),
           "runs_created": len(runs), "crashed_runs": crashed, "makespan_s": round(makespan, 2),
           "requests": requests, "requests_per_child": round(requests / args.children, 3),
           "start_pace": final.get("start_pace"),
           "pace_cuts_metric": bl.metric_sum(metrics, "floodgate_start_pace_cuts_total"),
           "load": load}
    print(f"rep {rep} tolerance {tolerance:>4} pacing {'on ' if pacing else 'off'}: "
          f"{final['state']:9} {counts} runs {len(runs)} crashed {crashed} "
          f"makespan {makespan:.1f}s requests/child {requests / args.children:.2f} "
          f"pace {final.get('start_pace')} (load {load})", flush=True)
    return row


def summary(rows: list[dict]) -> list[dict]:
    """Medians per (tolerance, pacing), in run order."""
    out = []
    for key in dict.fromkeys((r["tolerance"], r["pacing"]) for r in rows):
        rs = [r for r in rows if (r["tolerance"], r["pacing"]) == key]
        s = {"tolerance": key[0], "pacing": key[1], "n": len(rs),
             "states": sorted({r["state"] for r in rs})}
        for f in ("runs_created", "crashed_runs", "makespan_s", "requests_per_child"):
            s[f] = bl.spread([r[f] for r in rs])
        s["children_completed"] = bl.spread([r["counts"].get("COMPLETED", 0) for r in rs])
        out.append(s)
    return out


def main() -> int:
    ap = bl.batch_bench_parser(__doc__.split("\n")[0], "start_pacing", children=400, reps=3,
                               limit_s=600)
    ap.add_argument("--tolerances", default="0,100%", help="comma-separated: 0, 100%%")
    args = ap.parse_args()
    prov, rows = bl.run_batch_bench(args, lambda fake: [
        one_run(fake, args, pacing, tolerance, rep)
        for rep in range(1, args.reps + 1)
        for tolerance in args.tolerances.split(",") for pacing in (True, False)])
    doc = {"argv": sys.argv, "provenance": prov, "fake_schedule": BURSTY,
           "batch": {"limits": {"launches_per_second": 20, "burst": 20}, "relaunch_crashed": 3},
           "children": args.children, "rows": rows, "summary": summary(rows)}
    for s in doc["summary"]:
        print(f"tolerance {s['tolerance']:>4} pacing {'on ' if s['pacing'] else 'off'}: "
              f"{s['states']} crashed {s['crashed_runs']['median']} runs "
              f"{s['runs_created']['median']} makespan {s['makespan_s']['median']}s "
              f"requests/child {s['requests_per_child']['median']}")
    if not args.no_record:
        print(f"wrote {bl.write_result(args.record, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
