#!/usr/bin/env python3
"""Memory of floodgated per request (issue 11): peak and kept RSS for large submissions.

Each scenario runs against a fresh floodgated and a fresh fake Prefect (loopback, tests/'
harness). Prints one line per scenario: body size, answer, RSS before, peak (VmHWM) and RSS
after (2 s after the answer). Usage:

    FLOODGATED_BIN=build/ci/service/floodgated FAKE_PREFECT_BIN=build/ci/bin/fake-prefect \
      .venv-test/bin/python scripts/bench_request_memory.py
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


def scenario(binary: Path, fake_bin: Path, name: str, body: bytes, copies: int = 1) -> str:
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
            with concurrent.futures.ThreadPoolExecutor(copies) as pool:
                answers = list(pool.map(
                    lambda _: raw_request(fg.client.base, "POST", "/v1/batches", body,
                                          {"Content-Type": "application/json"}, timeout=300),
                    range(copies)))
            if not fg.running:
                return f"{name}: floodgated died"
            peak = status_kb(pid, "VmHWM")
            time.sleep(2)
            after = status_kb(pid, "VmRSS")
            codes = ",".join(str(a.status) for a in answers)
            return (f"{name:<36} body {len(body) / MIB:5.1f} MiB x{copies}  answers {codes:<16}"
                    f" RSS before {before / 1024:6.1f} MB  peak {peak / 1024:7.1f} MB"
                    f" (+{(peak - before) / 1024 / (len(body) * copies / MIB):4.1f}x body)"
                    f"  after {after / 1024:6.1f} MB")
        finally:
            fg.stop()
            fake.stop()


def main() -> None:
    binary = Path(os.environ.get("FLOODGATED_BIN", REPO / "build/ci/service/floodgated"))
    fake_bin = Path(os.environ.get("FAKE_PREFECT_BIN", REPO / "build/ci/bin/fake-prefect"))
    print(f"floodgated: {binary}")
    for name, body, n in (("16 MiB of {} runs (rejected: runs)", empty_runs(), 1),
                          ("4 x 16 MiB of {} runs at once", empty_runs(), 4),
                          ("accepted batch, 100,000 runs", accepted_batch(), 1),
                          ("{} x millions in one run's params", one_huge_run(), 1)):
        print(scenario(binary, fake_bin, name, body, n), flush=True)


if __name__ == "__main__":
    main()
