#!/usr/bin/env python3
"""The overload benchmark (issue 3, item 6): floodgate against the fan-out patterns users have.

    python3 tests/bench/overload.py                     # everything, one repetition
    python3 tests/bench/overload.py --reps 3            # median and spread over 3
    python3 tests/bench/overload.py --children 1000 --variants stall --no-faults   # a quick look

A fake Prefect (tests/fake_prefect) is made an overloaded server: at most C requests are
served at once, each takes service_time_ms + service_time_per_queued_ms x (queue length), at
most queue_limit wait, and arrivals beyond that overflow: "stall" (held stall_ms, then the
connection is dropped, as a saturated ingress does) or "503". Bulk creates are disabled on the
fake, so every pattern pays one request per child.

First, in the same run, the server's capacity is measured: a closed loop of keep-alive creates
at several concurrencies (C/2, C, C+2, 2C, 4C), both by the Python client below and by wrk (a
fast C client, tests/fake_prefect/wrk/create.lua), counting creates on the fake's side; the best
creates/s of all is the capacity, and ideal makespan = children / capacity.
Then, side by side for each overflow variant and fan-out size:
  (a) naive: every create at once (asyncio.gather), a 10 s timeout, no retry;
  (b) the semaphore pattern at the sizes of --sem-sizes (default C/2, C and 2C: below, at and
      above the server's capacity C), each create with an idempotency key, up to 5 retries with
      backoff 1, 2, 4, 8, 16 s plus up to 1 s of jitter, 10 s timeout per attempt; a retry's
      wait happens outside the semaphore (the slot is released while waiting), so the strongest
      honest version of what a user would write; --legacy-advice adds the earlier baseline
      (a semaphore of 5, retries inside it, no key);
  (c) floodgated with its defaults (--prefect-api-url and --db only), one batch, track false.
Each child carries parameters {"child": i}; created children and duplicates (children with
more than one run) are counted on the fake's side from /_fake/runs.
Then (c) with the bulk endpoint enabled (reported apart), and the fault run: no capacity limit,
20% random 503s and 5% dropped connections (plus an extra variant with 2% lost responses, the
ambiguous failure that makes retries without a key duplicate runs).
floodgated's in-flight limit is sampled from /metrics every 250 ms during (c); with
--plot-python (a Python with matplotlib) the series are drawn to docs/img/overload_limit.png.

Standard library only (the plot is a separate script, tests/bench/plot_overload.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

OK = (200, 201)
RETRYABLE = (408, 429, 500, 502, 503, 504)


def child_body(i: int, key: str | None = None) -> bytes:
    body = {"parameters": {"child": i}, "tags": ["bench"]}
    if key is not None:
        body["idempotency_key"] = key
    return json.dumps(body, separators=(",", ":")).encode()


def wrk_closed_loop(fake: "bl.Fake", workers: int, seconds: float) -> float | None:
    """Creates per second on the fake's side with wrk (a fast C client) at `workers`
    connections; None without wrk."""
    if shutil.which("wrk") is None:
        return None
    before = fake.stats()["created"]
    subprocess.run(["wrk", f"-t{min(2, workers)}", f"-c{workers}", f"-d{seconds:g}s", "--timeout", "30s",
                    "-s", str(bl.ROOT / "tests" / "fake_prefect" / "wrk" / "create.lua"),
                    f"http://127.0.0.1:{fake.port}{bl.CREATE_PATH}"],
                   check=True, capture_output=True, timeout=seconds + 60)
    return (fake.stats()["created"] - before) / seconds


# ---------------------------------------------------------------------------------------------
# patterns (a) and (b), and the capacity probe


async def closed_loop(host: str, port: int, workers: int, seconds: float) -> float:
    """Completed creates per second with `workers` keep-alive connections, each back to back."""
    done = 0
    start = time.monotonic()
    stop = start + seconds

    async def worker(w: int) -> None:
        nonlocal done
        conn = bl.Conn(host, port)
        i = 0
        while time.monotonic() < stop:
            i += 1
            try:
                status, _, _ = await asyncio.wait_for(
                    conn.request("POST", bl.CREATE_PATH, child_body(w * 1_000_000 + i)), 30)
            except Exception:
                conn.close()
                continue
            if status in OK and time.monotonic() <= stop:
                done += 1
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done / seconds


async def naive(host: str, port: int, n: int, timeout: float) -> dict:
    async def one(i: int) -> str:
        conn = bl.Conn(host, port)
        try:
            status, _, _ = await asyncio.wait_for(
                conn.request("POST", bl.CREATE_PATH, child_body(i), close=True), timeout)
            return "ok" if status in OK else f"http {status}"
        except TimeoutError:
            return "timeout"
        except Exception:
            return "connection error"
        finally:
            conn.close()

    t0 = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    return {"makespan_s": time.monotonic() - t0, "outcomes": dict(collections.Counter(outcomes)),
            "attempts": n}


async def advice(host: str, port: int, n: int, timeout: float, limit: int = 5,
                 retries: int = 5, keyed: bool = True, retry_outside: bool = True) -> dict:
    sem = asyncio.Semaphore(limit)
    pool = bl.Pool(host, port)
    attempts = 0
    run_tag = uuid.uuid4().hex[:8]

    async def one(i: int) -> str:
        body = child_body(i, f"bench:{run_tag}:{i}" if keyed else None)
        if retry_outside:
            return await one_outside(body)
        return await one_inside(body)

    async def try_once(body: bytes) -> tuple[str, bool]:
        """One attempt: its outcome, and whether it is final (ok, or not worth retrying)."""
        nonlocal attempts
        attempts += 1
        try:
            status, _, _ = await pool.request("POST", bl.CREATE_PATH, body, timeout)
        except TimeoutError:
            return "timeout", False
        except Exception:
            return "connection error", False
        if status in OK:
            return "ok", True
        return f"http {status}", status not in RETRYABLE

    async def one_outside(body: bytes) -> str:
        # Each attempt takes a slot; the backoff sleeps without one.
        last = "?"
        for attempt in range(retries + 1):
            async with sem:
                last, final = await try_once(body)
            if final:
                return last
            if attempt < retries:
                await asyncio.sleep(2 ** attempt + random.uniform(0, 1))
        return last

    async def one_inside(body: bytes) -> str:
        last = "?"
        async with sem:  # retries happen inside the semaphore, as in a tenacity-wrapped call
            for attempt in range(retries + 1):
                last, final = await try_once(body)
                if final:
                    return last
                if attempt < retries:
                    await asyncio.sleep(2 ** attempt + random.uniform(0, 1))
        return last

    t0 = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    makespan = time.monotonic() - t0
    pool.close()
    return {"makespan_s": makespan, "outcomes": dict(collections.Counter(outcomes)),
            "attempts": attempts}


# ---------------------------------------------------------------------------------------------
# pattern (c): floodgated


class MetricsPoller(threading.Thread):
    def __init__(self, fg: bl.Floodgated, t0: float, every: float = 0.25):
        super().__init__(daemon=True)
        self.fg, self.t0, self.every = fg, t0, every
        self.samples: list[dict] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            t = time.time() - self.t0
            try:
                m = self.fg.metrics()
                self.samples.append({
                    "t": t,
                    "limit": bl.metric_sum(m, "floodgate_prefect_in_flight_limit"),
                    "in_flight": bl.metric_sum(m, "floodgate_prefect_requests_in_flight"),
                    "latency_recent_s": bl.metric_sum(m, "floodgate_prefect_latency_recent_seconds"),
                    "latency_floor_s": bl.metric_sum(m, "floodgate_prefect_latency_floor_seconds"),
                    "created": bl.metric_sum(m, "floodgate_launches_total"),
                    "retries": bl.metric_sum(m, "floodgate_retries_total"),
                    "breaker_open": bl.metric_sum(m, "floodgate_circuit_breaker_open"),
                    "backoff_s": bl.metric_sum(m, "floodgate_prefect_backoff_remaining_seconds"),
                })
            except Exception as e:  # keep sampling; note the gap
                self.samples.append({"t": t, "error": str(e)})
            self.stop_flag.wait(self.every)


def run_floodgated(fake: bl.Fake, n: int, port: int, workdir: Path, extra: list[str],
                   batch_extra: dict | None = None) -> dict:
    fg = bl.Floodgated(port, fake.url + "/api", workdir, extra=extra, log_level=None)
    try:
        batch = {"deployment": "demo-flow/demo", "track": False,
                 "runs": [{"parameters": {"child": i}} for i in range(n)], **(batch_extra or {})}
        body = json.dumps(batch, separators=(",", ":")).encode()
        t0 = time.time()
        poller = MetricsPoller(fg, t0)
        poller.start()
        _, accepted = bl.http_json(fg.url + "/v1/batches", body)
        accept_s = time.time() - t0
        final = fg.wait_final(accepted["id"])
        makespan = time.time() - t0
        time.sleep(0.3)
        poller.stop_flag.set()
        poller.join()
        m = fg.metrics()
        creates = bl.metric_values(m, "floodgate_prefect_requests_total")
        create_requests = sum(v for k, v in creates.items() if 'endpoint="create_flow_run"' in k)
        bulk_requests = sum(v for k, v in creates.items() if 'endpoint="create_flow_run_bulk"' in k)
        return {
            "makespan_s": makespan, "accept_s": accept_s, "t0": t0,
            "batch_s": bl.iso_ts(final["finished_at"]) - bl.iso_ts(final["created_at"]),
            "state": final["state"], "counts": {k: v for k, v in final["counts"].items() if v},
            "retries": bl.metric_sum(m, "floodgate_retries_total"),
            "retries_by_reason": bl.metric_values(m, "floodgate_retries_total"),
            "retries_deferred": bl.metric_sum(m, "floodgate_retries_deferred_total"),
            "create_requests": create_requests, "bulk_requests": bulk_requests,
            "prefect_requests": {k: v for k, v in creates.items() if v},
            "launches": bl.metric_values(m, "floodgate_launches_total"),
            "series": poller.samples, "rss_hwm_mb": fg.vm("VmHWM") / 1024,
        }
    finally:
        fg.stop()


# ---------------------------------------------------------------------------------------------
# one scenario, counted on the fake's side


def count_children(fake: bl.Fake, n: int) -> dict:
    runs = fake.runs()
    per_child = collections.Counter(r["parameters"].get("child") for r in runs)
    created_at = sorted(bl.iso_ts(r["created"]) for r in runs)
    return {
        "runs": len(runs), "children_created": sum(1 for c in range(n) if per_child[c] > 0),
        "duplicates": sum(1 for c in range(n) if per_child[c] > 1),
        "extra_runs": sum(max(0, per_child[c] - 1) for c in range(n)),
        "created_times": created_at,
    }


def wait_idle(fake: bl.Fake, limit_s: float) -> float:
    """Waits until the fake holds no request (stalled connections of an earlier pattern are
    only dropped when their stall ends: the fake does not notice a client that gave up)."""
    t0 = time.monotonic()
    while fake.stats()["in_flight"] > 0 and time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
    return time.monotonic() - t0


def scenario(fake: bl.Fake, config: dict, pattern: str, n: int, args, capacity: float,
             extra_fg: list[str] | None = None, batch_extra: dict | None = None) -> dict:
    fake.reset({})
    waited = wait_idle(fake, args.stall_ms / 1000 + 10)
    fake.reset(config)
    reset_at = time.time()
    load = bl.load1()
    if pattern == "a":
        r = asyncio.run(naive("127.0.0.1", fake.port, n, args.timeout))
    elif pattern == "b-legacy":
        r = asyncio.run(advice("127.0.0.1", fake.port, n, args.timeout, limit=5, keyed=False,
                               retry_outside=False))
    elif pattern.startswith("b"):
        r = asyncio.run(advice("127.0.0.1", fake.port, n, args.timeout, limit=int(pattern[1:])))
    else:
        r = run_floodgated(fake, n, args.fg_port, args.out, extra_fg or [], batch_extra)
    client = pattern[0] in "ab"
    client_ok = r.get("outcomes", {}).get("ok") if client else None
    time.sleep(0.2)
    stats = fake.stats()
    counted = count_children(fake, n)
    created_times = counted.pop("created_times")
    r.update(counted)
    r.update({
        "pattern": pattern, "children": n, "load": load, "reset_at": reset_at, "waited_idle_s": waited,
        "client_ok_share": (client_ok or 0) / n if client else None,
        "created_share": counted["children_created"] / n,
        "ideal_s": n / capacity if capacity else None,
        "fake": {k: stats[k] for k in ("total_requests", "faults", "peak_in_flight", "peak_served",
                                       "peak_queue", "created", "existing")},
        "first_to_last_create_s": (created_times[-1] - created_times[0]) if created_times else None,
    })
    if r["ideal_s"]:
        r["makespan_over_ideal"] = r["makespan_s"] / r["ideal_s"]
    if pattern == "c":
        r["timeline"] = fake.timeline()
        base = r["t0"]
        r["created_offsets"] = [t - base for t in created_times]
        r["timeline_offset_s"] = reset_at - base  # timeline bucket t starts at t + this, from POST
    return r


# ---------------------------------------------------------------------------------------------
# reporting


def fmt_s(d: dict, digits: int = 1) -> str:
    if d["median"] is None:
        return "n/a"
    if d["n"] == 1:
        return f"{d['median']:.{digits}f}"
    return f"{d['median']:.{digits}f} [{d['min']:.{digits}f}-{d['max']:.{digits}f}]"


PATTERN_NAMES = {"a": "(a) naive gather", "b-legacy": "(b') sem 5, retries inside, no key",
                 "c": "(c) floodgated", "c-nobulk": "(c') floodgated --bulk false",
                 "c-bulk": "(c) floodgated, bulk on"}


def budget_check(r: dict) -> tuple[float, float]:
    """The retry budget of a floodgated fault run: (requests it charged at most, its bound).

    The bound: ratio x first attempts + 10/s x (T + 10 s window). The budget charges one token
    per retried request (a failed bulk request is one token for all its runs), while
    floodgate_retries_total counts retried runs; so the check is on requests: create requests
    (single and bulk) beyond one per child, which are the retried requests plus the bulk probes
    (an upper bound on what the budget paid)."""
    extra = r["create_requests"] + r.get("bulk_requests", 0) - r["children"]
    bound = 0.2 * r["children"] + 10 * (r["batch_s"] + 10)
    return extra, bound


def pattern_name(label: str) -> str:
    if label in PATTERN_NAMES:
        return PATTERN_NAMES[label]
    return f"(b) sem {label[1:]} + key + 5 retries outside"


def table(rows: list[dict], title: str) -> list[str]:
    out = [f"### {title}", "",
           "| pattern | children | created | client saw ok | duplicates | makespan s | ideal s | makespan/ideal | requests to fake | load |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = []
    for r in rows:
        k = (r["label"], r["children"])
        if k not in keys:
            keys.append(k)
    for label, n in keys:
        rs = [r for r in rows if r["label"] == label and r["children"] == n]
        created = bl.spread([round(r["created_share"] * n) for r in rs])  # counts: 99.98% is not 100
        dups = bl.spread([r["duplicates"] for r in rs])
        cok = fmt_s(bl.spread([round(r["client_ok_share"] * n) for r in rs]), 0) if rs[0]["client_ok_share"] is not None else "-"
        mk = bl.spread([r["makespan_s"] for r in rs])
        ratio = bl.spread([r.get("makespan_over_ideal") for r in rs])
        reqs = bl.spread([r["fake"]["total_requests"] for r in rs])
        load = bl.spread([r["load"] for r in rs])
        ideal = rs[0]["ideal_s"]
        out.append(f"| {pattern_name(label)} | {n} | {fmt_s(created, 0)} | {cok} | {fmt_s(dups, 0)} | {fmt_s(mk)} | "
                   f"{ideal:.2f} | {fmt_s(ratio, 2)} | {fmt_s(reqs, 0)} | {fmt_s(load)} |"
                   if ideal else
                   f"| {pattern_name(label)} | {n} | {fmt_s(created, 0)} | {cok} | {fmt_s(dups, 0)} | {fmt_s(mk)} | "
                   f"- | - | {fmt_s(reqs, 0)} | {fmt_s(load)} |")
    out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--children", default="1000,5000")
    ap.add_argument("--variants", default="stall,503")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--capacity", type=int, default=8)
    ap.add_argument("--service-time-ms", type=float, default=20)
    ap.add_argument("--per-queued-ms", type=float, default=2)
    ap.add_argument("--queue-limit", type=int, default=64)
    ap.add_argument("--stall-ms", type=int, default=15000)
    ap.add_argument("--timeout", type=float, default=10, help="client timeout of (a) and (b)")
    ap.add_argument("--probe-seconds", type=float, default=4)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--fault-variants", default="faults,faults+lost")
    ap.add_argument("--fault-children", default="", help="fan-outs of the fault runs (default: --children)")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-min load under this")
    ap.add_argument("--max-wait", type=float, default=600, help="... but at most this many seconds")
    ap.add_argument("--no-bulk", action="store_true", help="skip (c) with bulk enabled on the fake")
    ap.add_argument("--no-bulk-flag-run", action="store_true", help="skip (c) with --bulk false")
    ap.add_argument("--sem-sizes", default="", help="semaphore sizes of (b) (default C/2,C,2C)")
    ap.add_argument("--legacy-advice", action="store_true",
                    help="also run the earlier baseline: a semaphore of 5, retries inside, no key")
    ap.add_argument("--record", default="overload",
                    help="write docs/bench-results/<RECORD>.json ('' for a trial run: not recorded)")
    ap.add_argument("--fake-port", type=int, default=18202)
    ap.add_argument("--fg-port", type=int, default=18082)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-overload"))
    ap.add_argument("--plot-python", default="/tmp/bench-venv/bin/python")
    ap.add_argument("--plot", type=Path, default=bl.ROOT / "docs" / "img" / "overload_limit.png")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bl.raise_fd_limit()
    sizes = [int(x) for x in args.children.split(",")]
    sem_sizes = ([int(x) for x in args.sem_sizes.split(",")] if args.sem_sizes
                 else sorted({max(1, args.capacity // 2), args.capacity, 2 * args.capacity}))
    b_patterns = [f"b{k}" for k in sem_sizes] + (["b-legacy"] if args.legacy_advice else [])
    variants = [v for v in args.variants.split(",") if v]

    overload = {"bulk_enabled": False, "capacity": args.capacity, "service_time_ms": args.service_time_ms,
                "service_time_per_queued_ms": args.per_queued_ms, "queue_limit": args.queue_limit,
                "stall_ms": args.stall_ms}
    fake = bl.Fake(args.fake_port, args.out / "fake.log")
    results: dict = {"machine_start": bl.machine(), "provenance": bl.provenance(), "argv": sys.argv,
                     "overload_config": overload, "rows": []}
    lines: list[str] = []
    try:
        # Capacity: the best closed-loop rate over a few concurrencies.
        fake.reset(dict(overload, overflow="503"))
        probe = {}
        for k in sorted({max(1, args.capacity // 2), args.capacity, args.capacity + 2,
                         2 * args.capacity, 4 * args.capacity}):
            fake.reset(dict(overload, overflow="503"))
            probe[f"python {k}"] = asyncio.run(closed_loop("127.0.0.1", fake.port, k, args.probe_seconds))
            fake.reset(dict(overload, overflow="503"))
            w = wrk_closed_loop(fake, k, args.probe_seconds)
            if w is not None:
                probe[f"wrk {k}"] = w
            print(f"capacity probe: {k} in flight -> python {probe[f'python {k}']:.1f}, wrk {w} creates/s",
                  flush=True)
        capacity = max(probe.values())
        results["capacity_probe"] = probe
        results["capacity"] = capacity
        lines += [f"measured capacity: {capacity:.1f} creates/s (best of "
                  + ", ".join(f"{k} in flight: {v:.0f}/s" for k, v in probe.items())
                  + f"); nominal C/service_time = {args.capacity / args.service_time_ms * 1000:.0f}/s", ""]

        rows = results["rows"]

        def record(r: dict, label: str, variant: str) -> None:
            r["label"], r["variant"] = label, variant
            rows.append(r)
            (args.out / "results.partial.json").write_text(json.dumps(results, default=str))
            brief = {k: r.get(k) for k in ("makespan_s", "created_share", "duplicates", "makespan_over_ideal",
                                            "outcomes", "attempts", "retries", "create_requests", "state")}
            print(f"{variant} {label} n={r['children']}: " + json.dumps(brief, default=str), flush=True)

        def wait_quiet() -> None:
            # The machine is shared: wait for the load of other work to go before a group.
            t0 = time.monotonic()
            while bl.load1() > args.max_load and time.monotonic() - t0 < args.max_wait:
                time.sleep(10)
            print(f"# waited {time.monotonic() - t0:.0f} s for load < {args.max_load}; "
                  f"load {bl.machine()['load']}", flush=True)

        for rep in range(args.reps):
            for variant in variants:
                cfg = dict(overload, overflow=variant)
                for n in sizes:
                    wait_quiet()
                    for p in ("a", *b_patterns, "c"):
                        record(scenario(fake, cfg, p, n, args, capacity), p, variant)
                    if not args.no_bulk_flag_run:
                        # Diagnosis: the same with --bulk false, so no bulk probe and no fallback.
                        record(scenario(fake, cfg, "c", n, args, capacity, ["--bulk", "false"]),
                               "c-nobulk", variant)
            if not args.no_bulk:
                for n in sizes:
                    cfg = dict(overload, overflow="stall", bulk_enabled=True)
                    record(scenario(fake, cfg, "c", n, args, capacity), "c-bulk", "stall+bulk")
            if not args.no_faults:
                faults = {"bulk_enabled": False, "error_rate": 0.2, "error_status": 503, "drop_rate": 0.05}
                fault_variants = {"faults": faults, "faults+lost": dict(faults, lost_response_rate=0.02)}
                fault_sizes = [int(x) for x in args.fault_children.split(",")] if args.fault_children else sizes
                for variant in [v for v in args.fault_variants.split(",") if v]:
                    cfg = fault_variants[variant]
                    for n in fault_sizes:
                        wait_quiet()
                        for p in ("a", *b_patterns, "c"):
                            record(scenario(fake, cfg, p, n, args, 0), p, variant)
                        if not args.no_bulk_flag_run:
                            record(scenario(fake, cfg, "c", n, args, 0, ["--bulk", "false"]),
                                   "c-nobulk", variant)
    finally:
        fake.stop()
    results["machine_end"] = bl.machine()

    rows = results["rows"]
    for variant in variants:
        lines += table([r for r in rows if r["variant"] == variant],
                       f"overload, overflow={variant} (C={args.capacity}, {args.service_time_ms:g} ms "
                       f"+ {args.per_queued_ms:g} ms x queue, queue limit {args.queue_limit})")
    if any(r["variant"] == "stall+bulk" for r in rows):
        lines += table([r for r in rows if r["variant"] == "stall+bulk"],
                       "overload (stall), floodgated with the bulk endpoint enabled on the fake")
    for variant in ("faults", "faults+lost"):
        vr = [r for r in rows if r["variant"] == variant]
        if not vr:
            continue
        lines += table(vr, "unlimited server, 20% 503 + 5% dropped connections"
                       + (" + 2% lost responses (extra)" if variant == "faults+lost" else ""))
        for r in vr:
            if r["label"] in ("c", "c-nobulk"):
                first = r["children"]
                extra, bound = budget_check(r)
                r["retry_budget_bound"] = bound
                r["extra_create_requests"] = extra
                lines.append(f"- {pattern_name(r['label'])} n={first}: create requests {r['create_requests']:.0f} "
                             f"single + {r.get('bulk_requests', 0):.0f} bulk, {extra:.0f} beyond one per child "
                             f"(retried requests and bulk probes); retried runs {r['retries']:.0f} (a failed bulk "
                             f"request counts once per run in it), deferred by the budget "
                             f"{r['retries_deferred']:.0f}; budget bound 0.2 x {first} + 10/s x "
                             f"({r['batch_s']:.1f} s + 10 s) = {bound:.0f} -> "
                             f"{'within' if extra <= bound else 'OVER'}; state {r['state']}, "
                             f"existing (idempotent repeats) {r['fake']['existing']}")
        lines.append("")

    # Targets for (c).
    lines.append("### targets for (c)")
    for variant, label in [(v, l) for v in variants for l in ("c", "c-nobulk")]:
        for n in sizes:
            c = [r for r in rows if r["variant"] == variant and r["label"] == label and r["children"] == n]
            if not c:
                continue
            # (b) at its best size: the shortest median makespan among the (b) patterns.
            best_b = min((bl.spread([r["makespan_s"] for r in rows if r["variant"] == variant
                                     and r["label"] == p and r["children"] == n])["median"] or float("inf"))
                         for p in b_patterns)
            all_created = all(r["created_share"] == 1 for r in c)
            no_dup = all(r["duplicates"] == 0 for r in c)
            ratio = bl.spread([r["makespan_over_ideal"] for r in c])["median"]
            faster = bl.spread([r["makespan_s"] for r in c])["median"] < best_b
            lines.append(f"- {pattern_name(label)}, {variant}, n={n}: every child created {'MET' if all_created else 'NOT MET'}; "
                         f"no duplicate {'MET' if no_dup else 'NOT MET'}; makespan/ideal {ratio:.2f} "
                         f"{'MET' if ratio <= 1.25 else 'NOT MET'} (<= 1.25); shorter than the best (b) "
                         f"{'MET' if faster else 'NOT MET'}")
    lines.append(f"\nmachine: nproc={results['machine_start']['nproc']}, load at start "
                 f"{results['machine_start']['load']}, at end {results['machine_end']['load']}")
    report = "\n".join(lines)
    print("\n" + report)
    (args.out / "report.md").write_text(report + "\n")
    (args.out / "results.json").write_text(json.dumps(results, default=str))
    print(f"\nresults: {args.out / 'results.json'}")
    # The committed raw results: without the per-child time series (kept in --out).
    small = dict(results, rows=[{k: v for k, v in r.items() if k not in ("timeline", "created_offsets", "series")}
                                for r in results["rows"]])
    if args.record:
        print("raw results:", bl.write_result(args.record, small))
    if args.plot_python and Path(args.plot_python).exists():
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.plot_python, str(Path(__file__).with_name("plot_overload.py")),
                        str(args.out / "results.json"), str(args.plot)], check=False)


if __name__ == "__main__":
    main()
