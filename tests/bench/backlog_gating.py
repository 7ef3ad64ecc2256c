#!/usr/bin/env python3
"""Backlog gating benchmark (issue 17, item 3): peak backlog, makespan and requests per child
with and without gating, on a fake Prefect whose workers start at most 20 runs/s.

    python3 tests/bench/backlog_gating.py                     # 2,000 children, 2 reps of each
    python3 tests/bench/backlog_gating.py --children 500 --reps 1 --no-record   # a quick look

The fake is configured as tests/integration/test_backlog_gating.py configures it: a run leaves
SCHEDULED as soon as the workers get to it, at most 20 runs/s (`start_rate` 20; SCHEDULED 0 ms,
PENDING 0 ms) and runs 500 ms. One floodgated (its defaults, a fresh SQLite file) per run
submits one tracked batch of `--children` children with `limits.max_backlog` 0 (gating off) or
unset (the derived default). The two settings alternate (off, derived, off, ...) so that both
see the same machine.

Recorded per run: the batch's final state and counts; the peak number of the batch's runs
waiting to start on the fake (SCHEDULED or PENDING, sampled from /_fake/runs every 0.5 s; the
control endpoints are not counted in the fake's stats); the largest `progress.max_backlog` the
batch showed; the makespan (submit to the batch's final state, long-polled); the requests the
fake served (less health probes) per child; runs created and distinct idempotency keys
(exactly once). Raw results go to docs/bench-results/backlog_gating.json;
tests/bench/render_tables.py renders the table in docs/benchmarks.md from it. Standard library
only.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

WORKERS = {"scheduled_ms": 0, "pending_ms": 0, "running_ms": 500, "start_rate": 20}
SETTINGS = {"off": {"max_backlog": 0}, "derived": {}}


class Sampler(threading.Thread):
    """Peak of the batch's runs waiting to start on the fake, and of its progress.max_backlog."""

    def __init__(self, fake: bl.Fake, fg: bl.Floodgated, batch_id: str, interval: float = 0.5):
        super().__init__(daemon=True)
        self.fake, self.fg, self.tag, self.batch_id = fake, fg, f"floodgate-batch:{batch_id}", batch_id
        self.interval = interval
        self.stop_ev = threading.Event()
        self.peak_waiting = 0
        self.peak_max_backlog = None
        self.samples = 0

    def run(self):
        while not self.stop_ev.is_set():
            try:
                runs = self.fake.runs()
                waiting = sum(1 for r in runs if self.tag in r["tags"]
                              and r["state_type"] in ("SCHEDULED", "PENDING"))
                self.peak_waiting = max(self.peak_waiting, waiting)
                prog = bl.http_json(f"{self.fg.url}/v1/batches/{self.batch_id}")[1].get("progress") or {}
                mb = prog.get("max_backlog")
                if mb is not None:
                    self.peak_max_backlog = max(self.peak_max_backlog or 0, mb)
                self.samples += 1
            except Exception as e:  # noqa: BLE001 - keep sampling; report at the end
                print(f"sample failed: {e}", file=sys.stderr)
            self.stop_ev.wait(self.interval)


def one_run(fake: bl.Fake, args, setting: str, rep: int) -> dict:
    fake.reset({"run_schedule": WORKERS})
    base = bl.fake_api_requests(fake.stats())
    fg = bl.Floodgated(bl.free_port(), fake.url + "/api", args.out)
    load = bl.machine()["load"]
    try:
        batch = {"deployment": "demo-flow/demo",
                 "runs": [{"parameters": {"i": i}} for i in range(args.children)],
                 "track": True}
        if SETTINGS[setting]:
            batch["limits"] = dict(SETTINGS[setting])
        t0 = time.monotonic()
        accepted = fg.post_batch(batch)
        sampler = Sampler(fake, fg, accepted["id"])
        sampler.start()
        final = fg.wait_final(accepted["id"], limit_s=args.limit_s)
        makespan = time.monotonic() - t0
        sampler.stop_ev.set()
        sampler.join(10)
        requests = bl.fake_api_requests(fake.stats()) - base
    finally:
        fg.stop()
    tag = f"floodgate-batch:{accepted['id']}"
    runs = [r for r in fake.runs() if tag in r["tags"]]
    keys = {r.get("idempotency_key") for r in runs}
    counts = {k: v for k, v in final["counts"].items() if v}
    row = {"rep": rep, "setting": setting, "max_backlog": SETTINGS[setting].get("max_backlog"),
           "children": args.children, "state": final["state"], "counts": counts,
           "runs_created": len(runs), "distinct_keys": len(keys),
           "exactly_once": len(runs) == len(keys) == args.children,
           "peak_waiting": sampler.peak_waiting, "peak_max_backlog": sampler.peak_max_backlog,
           "samples": sampler.samples, "makespan_s": round(makespan, 2), "requests": requests,
           "requests_per_child": round(requests / args.children, 3), "load": load}
    print(f"rep {rep} max_backlog {setting:7}: {final['state']:9} {counts} runs {len(runs)} "
          f"keys {len(keys)} peak waiting {sampler.peak_waiting} (max_backlog up to "
          f"{sampler.peak_max_backlog}) makespan {makespan:.1f}s requests/child "
          f"{requests / args.children:.2f} (load {load})", flush=True)
    return row


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == setting]
        s = {"setting": setting, "n": len(rs), "states": sorted({r["state"] for r in rs}),
             "exactly_once": all(r["exactly_once"] for r in rs)}
        for f in ("peak_waiting", "makespan_s", "requests_per_child"):
            s[f] = bl.spread([r[f] for r in rs])
        out.append(s)
    return out


def main() -> int:
    args = bl.batch_bench_parser(__doc__.split("\n")[0], "backlog_gating", children=2000,
                                 reps=2, limit_s=900).parse_args()
    prov, rows = bl.run_batch_bench(args, lambda fake: [
        one_run(fake, args, setting, rep)
        for rep in range(1, args.reps + 1) for setting in ("off", "derived")])
    doc = {"argv": sys.argv, "provenance": prov, "fake_schedule": WORKERS,
           "children": args.children, "rows": rows, "summary": summary(rows)}
    for s in doc["summary"]:
        print(f"max_backlog {s['setting']:7}: {s['states']} peak waiting "
              f"{s['peak_waiting']['median']} makespan {s['makespan_s']['median']}s "
              f"requests/child {s['requests_per_child']['median']} exactly once {s['exactly_once']}")
    if not args.no_record:
        print(f"wrote {bl.write_result(args.record, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
