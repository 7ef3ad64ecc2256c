#!/usr/bin/env python3
"""Submit run-demo.sh's batch and watch it until it ends (standard library only).

    demo_watch.py FLOODGATE_URL PREFECT_API_URL --runs 100 --max-running 8 --sleep-s 2

It waits as long as the batch moves: it gives up (exit 4, the batch goes on in floodgated)
only when nothing has changed for --stall-s seconds (600) — no item changed state in floodgate
and no child changed state in Prefect — or, if set, after --timeout-s (0: no limit). A fixed
time limit is the wrong question on a busy machine: the children are Python processes that
spend seconds of CPU each starting Prefect's engine, so with other work beside them the
worker may start one every ten seconds, and the batch is fine, only slow.

While it waits it says what it waits for, from both sides: floodgate's counts (launched,
waiting to launch, done), the children's states in Prefect (SCHEDULED: waiting for the
worker to pick them up; PENDING/RUNNING: the worker started them), the rate and ETA over
the last minutes, and the machine's load average. At the end it counts the children in
Prefect by the batch's tag and idempotency keys (each must be there exactly once).

Exit status: 0 the batch COMPLETED (and every child exists once in Prefect), 1 it ended
FAILED or CANCELLED (or a child is missing or doubled), 4 the watch stopped, 3 floodgate
could not be reached.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import urllib.error
import urllib.request

FINAL_BATCH = ("COMPLETED", "FAILED", "CANCELLED")
DONE_ITEMS = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "LAUNCH_FAILED", "SKIPPED", "STUCK")
FINAL_PREFECT = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]


def call(url: str, body=None, timeout: float = 60.0):
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Prefect:
    """The children as Prefect sees them (by the tag floodgate gives every child)."""

    def __init__(self, api: str, tag: str):
        self.api, self.tag = api.rstrip("/"), tag

    def live_states(self) -> collections.Counter | None:
        """States of the children not final yet (at most max_running + a few: one page)."""
        try:
            runs = call(self.api + "/flow_runs/filter",
                        {"flow_runs": {"tags": {"all_": [self.tag]},
                                       "state": {"type": {"not_any_": FINAL_PREFECT}}},
                         "limit": 200}, timeout=30)
        except (OSError, ValueError, urllib.error.HTTPError):
            return None  # busy or down: the next round asks again
        return collections.Counter(r["state_type"] for r in runs)

    def all_runs(self) -> list[dict]:
        out, offset = [], 0
        while True:
            page = call(self.api + "/flow_runs/filter",
                        {"flow_runs": {"tags": {"all_": [self.tag]}}, "limit": 200,
                         "offset": offset}, timeout=60)
            out.extend(page)
            if len(page) < 200:
                return out
            offset += 200


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("floodgate_url")
    ap.add_argument("prefect_api_url")
    ap.add_argument("--deployment", default="demo-flow/demo")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--max-running", type=int, default=8)
    ap.add_argument("--sleep-s", type=float, default=2.0)
    ap.add_argument("--tag", default="floodgate-demo")
    ap.add_argument("--stall-s", type=float, default=600.0)
    ap.add_argument("--timeout-s", type=float, default=0.0)
    ap.add_argument("--every-s", type=float, default=30.0,
                    help="print a status line this often (and on every change on a terminal)")
    a = ap.parse_args()
    fg = a.floodgate_url.rstrip("/")
    tty = sys.stdout.isatty()

    t0 = time.monotonic()
    try:
        b = call(fg + "/v1/batches", {
            "deployment": a.deployment, "tags": [a.tag],
            "runs": [{"parameters": {"x": i, "sleep_s": a.sleep_s}} for i in range(a.runs)],
            "limits": {"max_running": a.max_running}})
    except (OSError, urllib.error.URLError) as e:
        print(f"floodgate at {fg} cannot be reached: {e}", file=sys.stderr)
        return 3
    bid = b["id"]
    prefect = Prefect(a.prefect_api_url, f"floodgate-batch:{bid}")
    print(f"batch {bid}: {a.runs} runs of {a.deployment} (load average {load()})")
    print(f"  follow it: {fg}/v1/batches/{bid}   (children in Prefect: tag floodgate-batch:{bid})")

    samples: collections.deque[tuple[float, int]] = collections.deque()
    last_change = time.monotonic()
    last_key = None
    last_print = 0.0
    peak_load = 0.0
    while True:
        now = time.monotonic()
        c = b["counts"]
        done = sum(c.get(k, 0) for k in DONE_ITEMS)
        live = prefect.live_states() if b["state"] not in FINAL_BATCH else collections.Counter()
        key = (b["version"], tuple(sorted((live or {}).items())) if live is not None else None)
        if key != last_key:
            last_key, last_change = key, now
        samples.append((now, done))
        while len(samples) > 2 and now - samples[0][0] > 300:
            samples.popleft()
        rate = (done - samples[0][1]) / (now - samples[0][0]) if now - samples[0][0] >= 1 else 0.0
        try:
            peak_load = max(peak_load, os.getloadavg()[0])
        except OSError:
            pass
        final = b["state"] in FINAL_BATCH
        if final or tty or now - last_print >= a.every_s:
            last_print = now
            waiting = c.get("PENDING", 0) + c.get("RETRY_WAIT", 0)
            launched = c.get("LAUNCHED", 0) + c.get("LAUNCHING", 0)
            failed = sum(c.get(k, 0) for k in ("FAILED", "CRASHED", "LAUNCH_FAILED", "STUCK"))
            eta = f"ETA {fmt_s((b['total'] - done) / rate)}" if rate > 0 and not final else ""
            if live is None:
                in_prefect = "Prefect busy"
            else:
                in_prefect = ("in Prefect: " + ", ".join(
                    f"{n} {s}" for s, n in sorted(live.items())) if live else "in Prefect: none live")
            line = (f"{time.strftime('%H:%M:%S')} {b['state']:<9} {done}/{b['total']} done "
                    f"(ok {c.get('COMPLETED', 0)}, failed {failed})  floodgate: {launched} "
                    f"launched, {waiting} to launch  {in_prefect}  "
                    f"{rate * 60:.1f}/min {eta}  {fmt_s(now - t0)}  load {load()}")
            if not final and now - last_change >= 60:
                line += f"  (no change for {fmt_s(now - last_change)})"
            sys.stdout.write(("\r" + line + "\x1b[K") if tty else line + "\n")
            sys.stdout.flush()
        if final:
            break
        if now - last_change > a.stall_s:
            print(f"\nnothing moved for {fmt_s(now - last_change)} (DEMO_STALL_S={a.stall_s:.0f}): "
                  f"batch {bid} is still {b['state']} and goes on in floodgated; is the Prefect "
                  f"worker running? (scripts/prefect-env.sh status, its log in the run dir)")
            return 4
        if a.timeout_s and now - t0 > a.timeout_s:
            print(f"\nstill {b['state']} after {fmt_s(now - t0)} (DEMO_TIMEOUT_S); batch {bid} "
                  f"goes on in floodgated")
            return 4
        try:
            b = call(f"{fg}/v1/batches/{bid}?wait_s=10&after_version={b['version']}", timeout=70)
        except (OSError, urllib.error.URLError) as e:
            print(f"\n(floodgate did not answer: {e}; asking again)")
            time.sleep(2)

    took = time.monotonic() - t0
    if tty:
        print()
    runs = prefect.all_runs()
    keys = collections.Counter(r.get("idempotency_key") for r in runs)
    twice = sum(1 for n in keys.values() if n > 1)
    states = collections.Counter(r["state_type"] for r in runs)
    print(f"batch {bid} {b['state']} in {fmt_s(took)} ({took:.0f} s): floodgate counts "
          f"{ {k: v for k, v in b['counts'].items() if v} }; Prefect has {len(runs)} children "
          f"({len(keys)} idempotency keys, {twice} used twice) {dict(states)}; load average now "
          f"{load()}, highest 1-min seen {peak_load:.1f}")
    ok = b["state"] == "COMPLETED" and len(runs) == b["total"] == len(keys) and twice == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
