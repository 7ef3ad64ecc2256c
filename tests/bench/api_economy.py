#!/usr/bin/env python3
"""API economy benchmark (issue 4, item 10): Prefect API requests per child, launch plus tracking.

    python3 tests/bench/api_economy.py                 # 1,000 children, 1 repetition
    python3 tests/bench/api_economy.py --reps 3
    python3 tests/bench/api_economy.py --children 200 --running-ms 8000   # a quick look

Children "run" 60 s each on the fake Prefect (run_schedule: SCHEDULED 1 s, PENDING 1 s,
RUNNING 58 s, then COMPLETED). Counted on the fake's side, from /_fake/stats total_requests
less health/ready probes, after a reset, for:
  floodgate          floodgated with its defaults, one batch, track true, bulk enabled on the fake
  floodgate+subflow  the same with parent_flow_run_id (one placeholder task run per child, as
                     run_deployment(as_subflow=True) makes; the bulk endpoint creates none)
  run_deployment+subflow  a simulation of Prefect's run_deployment with a parent
                     (as_subflow=True), per child: GET /deployments/name/{flow}/{name}, POST
                     /task_runs/ (placeholder), POST /deployments/{id}/create_flow_run, then GET
                     /flow_runs/{id} at once and every 5 s until the state is final; all children
                     concurrently (asyncio), as a parent's asyncio.gather runs them.
  run_deployment     the same without a parent (as_subflow=False): no placeholder task run.
Like is compared with like: floodgate against run_deployment without a parent, and
floodgate+subflow against run_deployment+subflow.
The analytic count of run_deployment for a run that ends L s after it is created:
  3 + (floor(L / 5) + 1) with a parent (resolve, placeholder, create; reads at 0, 5, ..., >= L),
  2 + (floor(L / 5) + 1) without.
The raw results go to docs/bench-results/api_economy.json (tests/bench/render_tables.py).
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def api_requests(stats: dict) -> int:
    req = stats["requests"]
    return stats["total_requests"] - req.get("health", 0) - req.get("ready", 0)


def schedule(args) -> dict:
    return {"scheduled_ms": args.scheduled_ms, "pending_ms": args.pending_ms,
            "running_ms": args.running_ms}


def make_parent(fake: bl.Fake) -> str:
    # A parent flow run that outlives the benchmark.
    body = {"parameters": {"__fake_running_ms": 3_600_000}, "tags": ["parent"]}
    _, run = bl.http_json(fake.url + bl.CREATE_PATH, body)
    return run["id"]


def run_floodgate(fake: bl.Fake, args, subflow: bool) -> dict:
    fake.reset({"bulk_enabled": True, "run_schedule": schedule(args)})
    parent = make_parent(fake) if subflow else None
    base = api_requests(fake.stats())
    fg = bl.Floodgated(args.fg_port, fake.url + "/api", args.out, log_level=None)
    try:
        batch = {"deployment": "demo-flow/demo", "track": True,
                 "runs": [{"parameters": {"child": i}} for i in range(args.children)]}
        if parent:
            batch["parent_flow_run_id"] = parent
        t0 = time.time()
        accepted = fg.post_batch(batch)
        final = fg.wait_final(accepted["id"], limit_s=args.running_ms / 1000 * 10 + 600)
        elapsed = time.time() - t0
        m = fg.metrics()
    finally:
        fg.stop()
    stats = fake.stats()
    n = api_requests(stats) - base
    return {"label": "floodgate+subflow" if subflow else "floodgate", "children": args.children,
            "requests": n, "per_child": n / args.children, "elapsed_s": elapsed,
            "state": final["state"], "counts": {k: v for k, v in final["counts"].items() if v},
            "by_endpoint": stats["requests"],
            "floodgate_prefect_requests": {k: v for k, v in bl.metric_values(
                m, "floodgate_prefect_requests_total").items() if v}}


async def run_deployment_sim(fake: bl.Fake, args, parent: str | None) -> dict:
    pool = bl.Pool("127.0.0.1", fake.port)
    reads = []
    lifetimes = []

    async def child(i: int) -> None:
        timeout = 60
        s, _, d = await pool.request("GET", "/api/deployments/name/demo-flow/demo", None, timeout)
        dep = json.loads(d)
        body = {"parameters": {"child": i}, "state": {"type": "SCHEDULED", "name": "Scheduled"}}
        if parent is None:
            return await create_and_wait(dep, body)
        task = {"flow_run_id": parent, "task_key": "prefect.deployments.flow_runs.run_deployment.demo-flow-demo",
                "dynamic_key": str(i), "name": "demo-flow/demo", "state": {"type": "PENDING", "name": "Pending"},
                "task_inputs": {}, "empirical_policy": {"retries": 0, "retry_delay": 0}}
        s, _, d = await pool.request("POST", "/api/task_runs/", json.dumps(task).encode(), timeout)
        assert s in (200, 201), (s, d)
        body["parent_task_run_id"] = json.loads(d)["id"]
        await create_and_wait(dep, body)

    async def create_and_wait(dep: dict, body: dict) -> None:
        timeout = 60
        s, _, d = await pool.request("POST", f"/api/deployments/{dep['id']}/create_flow_run",
                                     json.dumps(body).encode(), timeout)
        assert s in (200, 201), (s, d)
        run_id = json.loads(d)["id"]
        created = time.monotonic()
        n = 0
        while True:
            s, _, d = await pool.request("GET", f"/api/flow_runs/{run_id}", None, timeout)
            n += 1
            if s == 200 and json.loads(d)["state_type"] in FINAL:
                break
            await asyncio.sleep(5)
        reads.append(n)
        lifetimes.append(time.monotonic() - created)

    t0 = time.time()
    await asyncio.gather(*(child(i) for i in range(args.sim_children)))
    pool.close()
    return {"elapsed_s": time.time() - t0, "reads": reads, "lifetimes": lifetimes}


def run_sim(fake: bl.Fake, args, subflow: bool) -> dict:
    fake.reset({"bulk_enabled": True, "run_schedule": schedule(args)})
    parent = make_parent(fake) if subflow else None
    base = api_requests(fake.stats())
    r = asyncio.run(run_deployment_sim(fake, args, parent))
    stats = fake.stats()
    n = api_requests(stats) - base
    reads = r["reads"]
    return {"label": "run_deployment+subflow (simulated)" if subflow else "run_deployment (simulated)",
            "children": args.sim_children, "requests": n,
            "per_child": n / args.sim_children, "elapsed_s": r["elapsed_s"],
            "reads_per_child": {"min": min(reads), "max": max(reads), "mean": sum(reads) / len(reads)},
            "by_endpoint": stats["requests"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--children", type=int, default=1000)
    ap.add_argument("--sim-children", type=int, default=1000,
                    help="concurrent run_deployment waiters in the simulation")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--scheduled-ms", type=int, default=1000)
    ap.add_argument("--pending-ms", type=int, default=1000)
    ap.add_argument("--running-ms", type=int, default=58000)
    ap.add_argument("--poll-s", type=float, default=5, help="run_deployment's poll_interval (analytic)")
    ap.add_argument("--no-subflow", action="store_true", help="skip floodgate with parent_flow_run_id")
    ap.add_argument("--record", default="api_economy",
                    help="write docs/bench-results/<RECORD>.json ('' for a trial run: not recorded)")
    ap.add_argument("--fake-port", type=int, default=18203)
    ap.add_argument("--fg-port", type=int, default=18083)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-economy"), help="logs and report")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bl.raise_fd_limit()
    life_s = (args.scheduled_ms + args.pending_ms + args.running_ms) / 1000
    reads = math.floor(life_s / args.poll_s) + 1
    analytic, analytic_noparent = 3 + reads, 2 + reads
    results = {"machine_start": bl.machine(), "provenance": bl.provenance(), "argv": sys.argv,
               "rows": [], "life_s": life_s, "analytic_run_deployment_per_child": analytic,
               "analytic_run_deployment_no_parent_per_child": analytic_noparent}
    fake = bl.Fake(args.fake_port, args.out / "fake.log")
    try:
        for rep in range(args.reps):
            runs = [lambda: run_floodgate(fake, args, False), lambda: run_sim(fake, args, False)]
            if not args.no_subflow:
                runs += [lambda: run_floodgate(fake, args, True), lambda: run_sim(fake, args, True)]
            for f in runs:
                load = bl.load1()
                r = f()
                r["rep"], r["load"] = rep, load
                results["rows"].append(r)
                print(json.dumps(r), flush=True)
    finally:
        fake.stop()
    results["machine_end"] = bl.machine()

    rows = results["rows"]
    lines = [f"children run {life_s:g} s each (scheduled {args.scheduled_ms / 1000:g} s, pending "
             f"{args.pending_ms / 1000:g} s, running {args.running_ms / 1000:g} s)", "",
             "| pattern | children | API requests (median) | per child: median [min-max] | elapsed s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for label in dict.fromkeys(r["label"] for r in rows):
        rs = [r for r in rows if r["label"] == label]
        req = bl.spread([r["requests"] for r in rs])
        per = bl.spread([r["per_child"] for r in rs])
        el = bl.spread([r["elapsed_s"] for r in rs])
        per_s = (f"{per['median']:.3f}" if per["n"] == 1
                 else f"{per['median']:.3f} [{per['min']:.3f}-{per['max']:.3f}]")
        lines.append(f"| {label} | {rs[0]['children']} | {req['median']:.0f} | {per_s} | {el['median']:.1f} |")
    lines.append(f"| run_deployment (analytic: 2 + floor({life_s:g}/{args.poll_s:g}) + 1 reads) | - | - | "
                 f"{analytic_noparent} | - |")
    lines.append(f"| run_deployment+subflow (analytic: 3 + floor({life_s:g}/{args.poll_s:g}) + 1 reads) | - | - | "
                 f"{analytic} | - |")

    def med(label: str):
        return bl.spread([r["per_child"] for r in rows if r["label"] == label])["median"]
    fg, sim = med("floodgate"), med("run_deployment (simulated)")
    lines += ["", f"target floodgate (bulk) <= 0.1 requests per child: {'MET' if fg <= 0.1 else 'NOT MET'} "
              f"({fg:.3f})",
              f"like for like, no parent: run_deployment {sim:.2f} vs floodgate {fg:.3f} per child "
              f"({sim / fg:.0f}x)"]
    fgs, sims = med("floodgate+subflow"), med("run_deployment+subflow (simulated)")
    if fgs is not None and sims is not None:
        lines.append(f"like for like, with a parent: run_deployment {sims:.2f} vs floodgate {fgs:.3f} "
                     f"per child ({sims / fgs:.0f}x)")
    lines += [
              f"machine: nproc={results['machine_start']['nproc']}, load at start "
              f"{results['machine_start']['load']}, at end {results['machine_end']['load']}"]
    for r in rows:
        lines.append(f"- {r['label']} rep {r['rep']}: by endpoint {r['by_endpoint']}"
                     + (f"; reads per child {r['reads_per_child']}" if "reads_per_child" in r else "")
                     + (f"; batch {r['state']} {r['counts']}" if "state" in r else ""))
    report = "\n".join(lines)
    print("\n" + report)
    (args.out / "report.md").write_text(report + "\n")
    (args.out / "results.json").write_text(json.dumps(results))
    if args.record:
        print("raw results:", bl.write_result(args.record, results))


if __name__ == "__main__":
    main()
