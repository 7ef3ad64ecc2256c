#!/usr/bin/env python3
"""Memory of floodgated per request (issue 11): peak and kept RSS for large submissions.

Each scenario runs against a fresh floodgated and a fresh fake Prefect (loopback, tests/'
harness). Prints one line per scenario: body size, answer, RSS before, peak (VmHWM) and RSS
after (2 s after the answer). Usage:

    FLOODGATED_BIN=build/ci/service/floodgated FAKE_PREFECT_BIN=build/ci/bin/fake-prefect \
      .venv-test/bin/python scripts/bench_request_memory.py [--no-record]

The raw results go to docs/bench-results/request_memory.json (rendered into docs/benchmarks.md
by tests/bench/render_tables.py).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "bench"))

import benchlib as bl  # noqa: E402

from harness import DEMO_DEPLOYMENT, FakePrefect, Floodgated, raw_request  # noqa: E402
from openapi_check import OpenApiChecker  # noqa: E402

MIB = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def empty_runs() -> bytes:
    head = b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "track": false, "runs": ['
    return head + b",".join([b"{}"] * ((16 * MIB - 200) // 3)) + b"]}"


def accepted_batch() -> bytes:
    # 100,000 runs (the default maximum) of ~160 bytes: just under 16 MiB.
    run = {"parameters": {"customer": "c" * 40, "region": "eu-west-1", "day": "2026-01-02",
                          "amount": 12345.5, "ids": list(range(10))}}
    one = json.dumps(run).encode()
    n = min(100000, (16 * MIB - 200) // (len(one) + 1))
    head = b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "track": false, ' \
           b'"limits": {"launches_per_second": 0.001, "burst": 1}, "runs": ['
    return head + b",".join([one] * n) + b"]}"


def one_huge_run() -> bytes:
    inner = b",".join([b"{}"] * ((16 * MIB - 200) // 3))
    return (b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "runs": [{"parameters": '
            b'{"a": [' + inner + b"]}}]}")


def scenario(binary: Path, fake_bin: Path, name: str, body: bytes, copies: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        fake = FakePrefect(fake_bin, tmpd / "fake.log")
        fg = Floodgated(binary, fake, tmpd, "fg",
                        checker=OpenApiChecker(REPO / "proto" / "openapi.yaml"))
        try:
            fg.start()
            time.sleep(0.5)
            pid = fg.proc.pid
            before = status_kb(pid, "VmRSS")
            load = bl.load1()
            with concurrent.futures.ThreadPoolExecutor(copies) as pool:
                answers = list(pool.map(
                    lambda _: raw_request(fg.client.base, "POST", "/v1/batches", body,
                                          {"Content-Type": "application/json"}, timeout=300),
                    range(copies)))
            if not fg.running:
                sys.exit(f"{name}: floodgated died")
            peak = status_kb(pid, "VmHWM")
            time.sleep(2)
            after = status_kb(pid, "VmRSS")
            return {"scenario": name, "body_mib": len(body) / MIB, "copies": copies,
                    "answers": [a.status for a in answers], "rss_before_mb": before / 1024,
                    "peak_mb": peak / 1024, "rss_after_mb": after / 1024, "load": load,
                    "peak_over_body": (peak - before) / 1024 / (len(body) * copies / MIB)}
        finally:
            fg.stop()
            fake.stop()


def main() -> None:
    binary = Path(os.environ.get("FLOODGATED_BIN", REPO / "build/ci/service/floodgated"))
    fake_bin = Path(os.environ.get("FAKE_PREFECT_BIN", REPO / "build/ci/bin/fake-prefect"))
    print(f"floodgated: {binary}")
    provenance = bl.provenance()
    rows = []
    for name, body, n in (("16 MiB of {} runs (rejected: runs)", empty_runs(), 1),
                          ("4 x 16 MiB of {} runs at once", empty_runs(), 4),
                          ("accepted batch, 100,000 runs", accepted_batch(), 1),
                          ("{} x millions in one run's params", one_huge_run(), 1)):
        r = scenario(binary, fake_bin, name, body, n)
        rows.append(r)
        print(f"{name:<36} body {r['body_mib']:5.1f} MiB x{n}  answers {r['answers']}"
              f" RSS before {r['rss_before_mb']:6.1f} MB  peak {r['peak_mb']:7.1f} MB"
              f" (+{r['peak_over_body']:4.1f}x body)  after {r['rss_after_mb']:6.1f} MB", flush=True)
    if "--no-record" not in sys.argv:
        doc = {"rows": rows, "argv": ["scripts/bench_request_memory.py", *sys.argv[1:]],
               "provenance": provenance}
        print("raw results:", bl.write_result("request_memory", doc))


if __name__ == "__main__":
    main()
