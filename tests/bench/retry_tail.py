#!/usr/bin/env python3
"""Where the time goes when Prefect fails a steady share of requests at random.

The overload benchmark's "faults+lost" run (20% 503, 5% dropped connections, 2% answers lost
after the run was created, on a server with no capacity limit) took 96 s for 5,000 children
with floodgated's defaults once, against 29-37 s in its neighbours. This runs that scenario
alone, several times per setting and alternating the settings, and records when the last
children were created (the fake's own record), how many retries the retry budget held back
(floodgated's /metrics) and the makespan:

- defaults (retry budget 20% of first attempts plus 10/s; per-run backoff 1 s doubling to 60 s);
- `--retry-budget-ratio 0.5` (enough budget for a 25% failure rate);
- the same with the batch's `retry.max_delay_s` at 8 (a short per-run backoff ceiling).

    python3 tests/bench/retry_tail.py [--children 5000] [--reps 3]

Writes docs/bench-results/retry_tail.json (rendered into docs/benchmarks.md by
tests/bench/render_tables.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib as bl  # noqa: E402
import overload as ov  # noqa: E402

FAULTS_LOST = {"bulk_enabled": False, "error_rate": 0.2, "error_status": 503, "drop_rate": 0.05,
               "lost_response_rate": 0.02}
SETTINGS = {
    "defaults": ([], None),
    "budget 0.5": (["--retry-budget-ratio", "0.5"], None),
    "budget 0.5 + max_delay_s 8": (["--retry-budget-ratio", "0.5"], {"retry": {"max_delay_s": 8}}),
}
MARKS = (0.96, 0.99, 0.998, 1.0)  # shares of the children created


def created_at(offsets: list[float], n: int) -> dict[str, float | None]:
    """Seconds from the POST until the fake had created each share of MARKS of n children, from
    the sorted creation times of ov.scenario's `created_offsets`."""
    return {f"{share:g}": offsets[round(share * n) - 1] if len(offsets) >= round(share * n) else None
            for share in MARKS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--children", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--fake-port", type=int, default=18212)
    ap.add_argument("--fg-port", type=int, default=18092)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-retry-tail"))
    ap.add_argument("--record", default="retry_tail")
    ap.set_defaults(stall_ms=0)  # ov.scenario waits for stalled requests; this fake stalls none
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    prov = bl.provenance()
    doc = {"argv": sys.argv, "provenance": prov, "fake_config": FAULTS_LOST,
           "children": args.children, "settings": {k: {"flags": v[0], "batch": v[1]} for k, v in SETTINGS.items()},
           "rows": []}
    fake = bl.Fake(args.fake_port, args.out / "fake.log")
    try:
        for rep in range(args.reps):
            for name in args.settings.split(","):
                flags, batch_extra = SETTINGS[name]
                r = ov.scenario(fake, FAULTS_LOST, "c", args.children, args, 0, flags, batch_extra)
                row = {
                    "rep": rep, "setting": name, "load": r["load"], "state": r["state"],
                    "makespan_s": r["makespan_s"],
                    "created_at_s": created_at(r["created_offsets"], args.children),
                    "children_created": r["children_created"], "duplicates": r["duplicates"],
                    "retried_runs": r["retries"], "retries_deferred": r["retries_deferred"],
                    "create_requests": r["create_requests"], "bulk_requests": r["bulk_requests"],
                    "faults": r["fake"]["faults"], "total_requests": r["fake"]["total_requests"],
                }
                doc["rows"].append(row)
                print(json.dumps(row), flush=True)
                time.sleep(1)
    finally:
        fake.stop()
    print(f"wrote {bl.write_result(args.record, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
