#!/usr/bin/env python3
"""Report of launch_throughput.sh's two-build mode (FLOODGATED_BEFORE set): fg-before, loop and
fg-after per repetition, their rates and CPU per launch, and the ratios taken within each
repetition (measured back to back, so less exposed to the machine's drift than the medians).

    [BEFORE_COMMIT=...] [AFTER_COMMIT=...] python3 tests/bench/split_ab_report.py RESULTS.jsonl BEFORE_BINARY AFTER_BINARY

Writes docs/bench-results/launch_split_ab.json, or $RESULT_NAME.json (rendered into
docs/benchmarks.md by render_tables.py). Standard library only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402


def commit_of(binary: str, env: str) -> str:
    """The commit a binary was built from: $env if set (for a copied binary), else the commit of
    the checkout its build directory lies in."""
    if os.environ.get(env):
        return os.environ[env]
    try:
        out = subprocess.run(["git", "-C", str(Path(binary).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def per_rep(rows: list[dict]) -> list[dict]:
    """One line per repetition with the three rates, CPU per launch and the ratios the issue
    names."""
    out = []
    for rep in sorted({r["rep"] for r in rows}):
        by = {r["label"]: r for r in rows if r["rep"] == rep}
        if not all(k in by for k in ("fg-before", "loop", "fg-after")):
            continue
        b, l, a = by["fg-before"], by["loop"], by["fg-after"]
        out.append({
            "rep": rep, "load": l.get("load"),
            "before_rate": b["rate"], "loop_rate": l["rate"], "after_rate": a["rate"],
            "before_cpu_us": b["client_cpu_us"], "loop_cpu_us": l["client_cpu_us"],
            "after_cpu_us": a["client_cpu_us"],
            "after_over_before_rate": a["rate"] / b["rate"],
            "after_over_loop_rate": a["rate"] / l["rate"], "before_over_loop_rate": b["rate"] / l["rate"],
            "after_over_before_cpu": a["client_cpu_us"] / b["client_cpu_us"],
            "after_over_loop_cpu": a["client_cpu_us"] / l["client_cpu_us"],
            "before_over_loop_cpu": b["client_cpu_us"] / l["client_cpu_us"],
            "all_created": all(r["fake_created"] == r["runs"] and r["state"] == "COMPLETED" for r in (a, b)),
        })
    return out


def main() -> int:
    results, before_bin, after_bin = sys.argv[1:4]
    rows = [json.loads(line) for line in open(results)]
    reps = per_rep(rows)
    env = {k: os.environ[k] for k in ("REPS", "RUNS", "CONC", "SECONDS_PER", "MAX_LOAD", "MAX_WAIT_S")
           if k in os.environ}
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), f"FLOODGATED_BEFORE={before_bin}",
            f"FLOODGATED={after_bin}", "tests/bench/launch_throughput.sh"]
    doc = {"rows": rows, "per_rep": reps, "argv": argv,
           "env": {k: os.environ[k] for k in ("REPS", "RUNS", "CONC", "SECONDS_PER", "MAX_LOAD", "MAX_WAIT_S",
                                               "BEFORE_COMMIT", "AFTER_COMMIT") if k in os.environ}
           | {"FLOODGATED_BEFORE": before_bin, "FLOODGATED": after_bin},
           "before_commit": commit_of(before_bin, "BEFORE_COMMIT"),
           "after_commit": commit_of(after_bin, "AFTER_COMMIT")}
    prov = bl.provenance()
    # The run started long before this report; launch_throughput.sh passes the load it saw then.
    prov["load_start"] = os.environ.get("BENCH_LOAD_START", "not recorded")
    doc["provenance"] = prov
    out = bl.write_result(os.environ.get("RESULT_NAME", "launch_split_ab"), doc)
    if os.environ.get("BENCH_LOAD_END"):  # the load when the last measurement ended
        doc = json.loads(out.read_text())
        doc["provenance"]["load_end"] = os.environ["BENCH_LOAD_END"]
        out.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    print("raw results:", out)
    print(f"before = {doc['before_commit'][:12]} ({before_bin})\nafter  = {doc['after_commit'][:12]} ({after_bin})")
    print()
    print("| rep | load | before runs/s | loop req/s | after runs/s | before us | loop us | after us | "
          "after/before rate | after/loop rate | after/loop CPU |")
    for r in reps:
        print(f"| {r['rep']} | {r['load']} | {r['before_rate']:,.0f} | {r['loop_rate']:,.0f} | {r['after_rate']:,.0f} | "
              f"{r['before_cpu_us']:.0f} | {r['loop_cpu_us']:.0f} | {r['after_cpu_us']:.0f} | "
              f"{r['after_over_before_rate']:.2f} | {r['after_over_loop_rate']:.2f} | {r['after_over_loop_cpu']:.2f} |")
    if not reps:
        return 1
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0] if k not in ("rep", "load", "all_created")}
    print()
    for k, v in med.items():
        print(f"median {k}: {v:,.2f}")
    print(f"every batch COMPLETED with exactly one create per run: {all(r['all_created'] for r in reps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
