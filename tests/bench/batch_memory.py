#!/usr/bin/env python3
"""Memory and accept time of large batches (issue 16, item 6): floodgated's resident memory
while it accepts and launches batches of 10k, 100k, 1M and 5M runs against the fast fake.

Each size runs on a fresh fake and a fresh floodgated (SQLite, or --db a postgresql:// URL).
Batches up to --body-max runs go in one POST /v1/batches; larger ones are created unsealed with
the first chunk, then appended in chunks of --chunk runs (POST /v1/batches/{id}/runs with an
Idempotency-Key) and sealed. RSS is sampled every 0.1 s from /proc; VmHWM is the kernel's peak.
Every run must end COMPLETED with exactly N creates counted on the fake's side.

    tests/bench/batch_memory.py                         # this build, 10k..5M
    FLOODGATED_OLD=/path/to/old/floodgated tests/bench/batch_memory.py --old-sizes 10000,100000,1000000

Results: docs/bench-results/batch_memory.json (rendered into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

import benchlib as bl


def run_specs(first: int, n: int) -> list[dict]:
    # About 54 bytes a run, as the 1,000,000-run, 54 MB body.
    return [{"parameters": {"shard": i, "date": "2026-01-01", "mode": "full"}}
            for i in range(first, first + n)]


def post(url: str, body: dict, headers: dict | None = None, timeout: float = 600) -> dict:
    data = json.dumps(body, separators=(",", ":")).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


class Sampler:
    """VmRSS of a process every 0.1 s, on a thread; the peak since the last mark()."""

    def __init__(self, fg: bl.Floodgated):
        self.fg = fg
        self.peak = 0
        self.stop_ = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop_:
            try:
                self.peak = max(self.peak, self.fg.vm("VmRSS"))
            except OSError:
                return
            time.sleep(0.1)

    def mark(self) -> int:
        p, self.peak = self.peak, self.fg.vm("VmRSS")
        return max(p, self.peak)

    def stop(self):
        self.stop_ = True
        self.t.join()


def one(binary: str, n: int, args, workdir: Path) -> dict:
    fake_port, fg_port = bl.free_port(), bl.free_port()
    fake = bl.Fake(fake_port, workdir / f"fake-{n}.log")
    fake.reset({"bulk_enabled": True})
    bl.FLOODGATED = Path(binary)
    extra = ["--max-body-bytes", str(args.body_bytes), "--max-runs-per-batch", str(2_000_000),
             "--max-parse-memory", str(4 * args.body_bytes)]
    fg = bl.Floodgated(fg_port, fake.url + "/api", workdir / f"n{n}", extra=extra, db=args.db)
    try:
        rss_before = fg.vm("VmRSS")
        sampler = Sampler(fg)
        t0 = time.monotonic()
        one_body = n <= args.body_max
        first = n if one_body else args.chunk
        batch = {"deployment": bl.DEPLOYMENT_ID, "track": False, "runs": run_specs(0, first)}
        if not one_body:
            batch["sealed"] = False
        b = post(fg.url + "/v1/batches", batch)
        sent = first
        while sent < n:
            k = min(args.chunk, n - sent)
            post(f"{fg.url}/v1/batches/{b['id']}/runs", {"runs": run_specs(sent, k)},
                 {"idempotency-key": f"chunk-{sent}"})
            sent += k
        if not one_body:
            post(f"{fg.url}/v1/batches/{b['id']}/seal", {})
        accept_s = time.monotonic() - t0
        peak_accept = sampler.mark()
        hwm_accept = fg.vm("VmHWM")
        rss_after_accept = fg.vm("VmRSS")
        final = fg.wait_final(b["id"], limit_s=7200)
        done_s = time.monotonic() - t0
        peak_launch = sampler.mark()
        sampler.stop()
        creates = fake.stats()["created"]
        return {"n": n, "chunks": 1 if one_body else (n + args.chunk - 1) // args.chunk,
                "state": final["state"], "launched": final["counts"]["LAUNCHED"],
                "creates_on_fake": creates,
                "accept_s": round(accept_s, 2), "launch_s": round(done_s - accept_s, 1),
                "rss_before_mb": round(rss_before / 1024, 1),
                "peak_accept_mb": round(peak_accept / 1024, 1),
                "rss_after_accept_mb": round(rss_after_accept / 1024, 1),
                "hwm_accept_mb": round(hwm_accept / 1024, 1),
                "peak_launch_mb": round(peak_launch / 1024, 1),
                "hwm_total_mb": round(fg.vm("VmHWM") / 1024, 1),
                "rss_end_mb": round(fg.vm("VmRSS") / 1024, 1)}
    finally:
        fg.stop()
        fake.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000,5000000")
    ap.add_argument("--old-sizes", default="10000,100000,1000000")
    ap.add_argument("--body-max", type=int, default=1_000_000, help="largest batch in one body")
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--body-bytes", type=int, default=64 << 20)
    ap.add_argument("--db", default=None, help="a postgresql:// URL (default: a fresh SQLite)")
    ap.add_argument("--workdir", default=str(bl.ROOT / "build" / "bench-memory"))
    ap.add_argument("--out", default="batch_memory")
    args = ap.parse_args()
    bl.raise_fd_limit()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    builds = [("new", str(bl.FLOODGATED), [int(s) for s in args.sizes.split(",") if s])]
    if os.environ.get("FLOODGATED_OLD"):
        builds.append(("old", os.environ["FLOODGATED_OLD"],
                       [int(s) for s in args.old_sizes.split(",") if s]))
    provenance = bl.provenance()  # the commit and the load when the run starts
    rows = []
    for label, binary, sizes in builds:
        for n in sizes:
            row = {"build": label, "load_start": bl.machine()["load"], **one(binary, n, args, workdir)}
            row["load_end"] = bl.machine()["load"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    doc = {"store": "postgresql" if args.db else "sqlite", "rows": rows,
           "old_build": os.environ.get("FLOODGATED_OLD_COMMIT", ""), "argv": sys.argv,
           "page_items": 2000, "provenance": provenance}
    print(bl.write_result(args.out, doc))


if __name__ == "__main__":
    main()
