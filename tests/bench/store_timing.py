#!/usr/bin/env python3
"""The store's costs, SQLite next to PostgreSQL (issue 16, item 1): what one call of each store
method takes, from the two timing tests the unit lanes run anyway (`SqliteFileTest.LargeBatchTiming`
and `PostgresStoreTest.LargeBatchTiming` do the same steps on 100,000 items).

    python3 tests/bench/store_timing.py                 # 3 alternating rounds
    python3 tests/bench/store_timing.py --rounds 1 --no-record   # a quick look

Needs the built unit tests (`cmake --build build/ci --target test_store test_store_postgres`) and
a PostgreSQL database it may wipe: $FLOODGATE_TEST_PG_URL, or the throw-away cluster of
scripts/pg-cluster.sh, which the script starts (and stops) when that variable is unset. The two
binaries run one after the other in each round (SQLite first in odd rounds, PostgreSQL first in
even ones), so drift in the machine's load falls on both. CPU is the calling thread's only: for
PostgreSQL the server's own work does not show there. Raw results go to
docs/bench-results/store_timing.json (rendered into docs/benchmarks.md). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

LINE = re.compile(r"^\[ timing   \] (.+?)\s+wall\s+([\d.]+) ms\s+cpu\s+([\d.]+) ms$")
TESTS = {"sqlite": ("test_store", "SqliteFileTest.LargeBatchTiming"),
         "postgresql": ("test_store_postgres", "PostgresStoreTest.LargeBatchTiming")}


def run_one(store: str, env: dict) -> dict:
    binary, test = TESTS[store]
    path = bl.BUILD / "tests" / "unit" / binary
    out = subprocess.run([str(path), f"--gtest_filter={test}"], env=env, capture_output=True,
                         text=True, timeout=900)
    steps = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line.strip())
        if m:
            steps[m.group(1)] = {"wall_ms": float(m.group(2)), "cpu_ms": float(m.group(3))}
    if out.returncode != 0 or "[  PASSED  ] 1 test" not in out.stdout or not steps:
        sys.exit(f"{binary} {test} did not pass:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--record", default="store_timing")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ)
    started = False
    cluster = bl.ROOT / "scripts" / "pg-cluster.sh"
    if not env.get("FLOODGATE_TEST_PG_URL"):
        env["FLOODGATE_TEST_PG_URL"] = subprocess.run(["bash", str(cluster), "start"], check=True,
                                                      capture_output=True, text=True).stdout.strip()
        started = True
    provenance = bl.provenance()
    rows = []
    try:
        for rnd in range(1, args.rounds + 1):
            order = ["sqlite", "postgresql"] if rnd % 2 else ["postgresql", "sqlite"]
            for store in order:
                load = bl.load1()
                for step, t in run_one(store, env).items():
                    rows.append({"round": rnd, "store": store, "step": step, "load": load, **t})
                print(f"round {rnd} {store}: done (load {load})", flush=True)
    finally:
        if started:
            subprocess.run(["bash", str(cluster), "stop"], capture_output=True)
    for step in dict.fromkeys(r["step"] for r in rows):
        med = {s: statistics.median(r["wall_ms"] for r in rows if r["step"] == step and r["store"] == s)
               for s in TESTS}
        print(f"{step:<36} sqlite {med['sqlite']:9.3f} ms  postgresql {med['postgresql']:9.3f} ms"
              f"  ({med['postgresql'] / med['sqlite']:.1f}x)")
    if not args.no_record:
        doc = {"rows": rows, "rounds": args.rounds, "argv": sys.argv, "provenance": provenance}
        print("raw results:", bl.write_result(args.record, doc))


if __name__ == "__main__":
    main()
