#!/usr/bin/env python3
"""Replicas benchmark (issue 16, item 5): several floodgated replicas on one PostgreSQL database
next to one floodgated on SQLite, in one run.

    python3 tests/bench/replicas.py                 # the recorded sizes (about 10 minutes)
    python3 tests/bench/replicas.py --batches 3 --runs 100 --claim-batches 30 \\
        --pgbench-rows 2000 --tries 1 --tries-15 0 --no-record      # a quick look

Needs the throw-away PostgreSQL cluster of scripts/pg-cluster.sh (started and stopped by the
script unless --pg-url names a database it may wipe), psql and pgbench (Debian's
postgresql-15), and the fake Prefect (built from the checkout). Every part starts from an empty
database (the schema `public` is dropped and floodgated re-creates its tables) and a reset fake.

1. Throughput and Prefect's load. The same workload on 1 floodgated on SQLite and on 1, 2 and
   3 replicas on PostgreSQL: --batches batches of --runs untracked runs (`track` false: a batch
   completes when all its runs are created), posted round-robin to the replicas' APIs, against
   the fast fake (runs created at once, no latency) with `--bulk false` (one create request per
   run). Each configuration runs with the global --rate off (not binding) and with --rate R/s
   (binding; --burst R/10), --reps times (the eight one after the other in each repetition).
   Measured: the makespan from the first POST to the last create on the fake (runs/s = runs /
   makespan), the time to the first create, the fake's per-second buckets (`/_fake/timeline`)
   over the seconds with creates: requests per second, mean and busiest second; and exactly
   once: one run and one idempotency key per item, counted on the fake.
2. Claims. (a) Takeover: replica A accepts --claim-batches batches (slow ones, so they stay
   RUNNING) while B and C run; A is stopped with SIGTERM, which releases its leases; measured
   is the time from A's exit until B and C hold all of them (`owner_id`, polled with psql),
   i.e. claim rounds plus resuming the batches. (b) The claim statement itself: --pgbench-rows
   unowned RUNNING rows are inserted into `batches` and pgbench runs floodgated's claim UPDATE
   (the text of service/store/postgres_leases.cpp, with one-hour leases): 1 client with 1 row
   per statement (also over a tenth of the rows), 3 clients with 1 and with 50 rows per
   statement, as many statements as there are rows; claims/s = rows claimed / pgbench's run
   time (statements / statements per second).
3. Failover. Replica B runs; replica A is started, accepts a batch (3,000 runs at 100
   launches/s) and, once 50 are launched, is killed with kill -9 (or stopped with SIGTERM).
   Measured from the signal: when another replica holds the batch (psql) and when its items
   move again, i.e. its LAUNCHED count read through B's API first exceeds both the count read
   just before the signal and the count in the store once A is gone (after SIGTERM A drains:
   its requests in flight end as LAUNCHED), and when the fake first creates a new run after
   that. With --lease-ttl-s 3 (--tries times) and 15 (--tries-15 times), and
   SIGTERM with the 15 s TTL (--tries times).

Raw results go to docs/bench-results/replicas.json; tests/bench/render_tables.py renders the
tables in docs/benchmarks.md from it. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

DEPLOYMENT = "demo-flow/demo"
FAST = {"scheduled_ms": 0, "pending_ms": 0, "running_ms": 0}
PG_BIN = Path(os.environ.get("FLOODGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))

# floodgated's claim statement (service/store/postgres_leases.cpp, kClaim) with pgbench
# variables for the owner and the row count. The leases it writes last an hour: the pgbench
# clients write no heartbeat, so with a short TTL the rows claimed first would be free again
# (and claimed a second time) before the run ends, and rows claimed would undercount claims.
NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
CLAIM_SQL = (
    f"UPDATE batches SET owner_id = 'bench-' || :client_id, lease_expires_at = {NOW_MS} + 3600000 "
    "WHERE seq IN (SELECT b.seq FROM batches b WHERE b.state IN ('QUEUED', 'RUNNING', 'PAUSED') "
    f"AND (b.owner_id IS NULL OR (b.owner_id <> 'bench-' || :client_id AND b.lease_expires_at < {NOW_MS} "
    f"AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = b.owner_id AND r.heartbeat_at > {NOW_MS} - 15000))) "
    "ORDER BY b.seq LIMIT :n FOR UPDATE SKIP LOCKED) "
    "RETURNING seq, id, spec, state, total, created_at, updated_at, finished_at, version, "
    "idempotency_key, submitted_by;\n")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if (PG_BIN / name).exists():
        return str(PG_BIN / name)
    raise SystemExit(f"{name} not found (apt-get install postgresql)")


def sql(url: str, text: str) -> str:
    return subprocess.run([tool("psql"), url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", text],
                          check=True, capture_output=True, text=True, timeout=120).stdout.strip()


def wipe(url: str) -> None:
    """An empty database: the next floodgated creates its tables."""
    sql(url, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")


class Cluster:
    """The throw-away cluster of scripts/pg-cluster.sh, or the database --pg-url names."""

    def __init__(self, url: str | None):
        self.owned = url is None
        script = bl.ROOT / "scripts" / "pg-cluster.sh"
        self.url = url or subprocess.run(["bash", str(script), "start"], check=True,
                                         capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        if self.owned:
            subprocess.run(["bash", str(bl.ROOT / "scripts" / "pg-cluster.sh"), "stop"], check=False)


def batch_body(runs: int, **extra) -> dict:
    return {"deployment": DEPLOYMENT, "track": False,
            "runs": [{"parameters": {"i": i}} for i in range(runs)], **extra}


def start(fake: bl.Fake, args, name: str, db: str | None, *extra: str) -> bl.Floodgated:
    fg = bl.Floodgated(bl.free_port(), fake.url + "/api", args.out / name, list(extra), db=db)
    fg.name = name
    return fg


def replica_id(fg: bl.Floodgated) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return bl.http_json(fg.url + "/readyz")[1]["engine"]["replica"]["id"]
        except (urllib.error.URLError, OSError, KeyError, TypeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def view(fg: bl.Floodgated, batch_id: str, errors: dict | None = None) -> dict | None:
    """The batch through fg's API; None when it answers with an error (while the batch is being
    taken over), counted by status in `errors`."""
    try:
        return bl.http_json(f"{fg.url}/v1/batches/{batch_id}", timeout=10)[1]
    except urllib.error.HTTPError as e:
        code = str(e.code)
    except (urllib.error.URLError, OSError, ValueError) as e:
        code = type(e).__name__
    if errors is not None:
        errors[code] = errors.get(code, 0) + 1
    return None


def exactly_once(fake: bl.Fake, ids: list[str], runs: int) -> dict:
    per = {i: [] for i in ids}
    for r in fake.runs():
        key = r.get("idempotency_key") or ""
        for i in ids:
            if i in key:
                per[i].append(key)
                break
    runs_created = sum(len(v) for v in per.values())
    keys = sum(len(set(v)) for v in per.values())
    ok = all(len(v) == runs and len(set(v)) == runs for v in per.values())
    return {"runs_created": runs_created, "distinct_keys": keys, "expected": runs * len(ids),
            "exactly_once": ok}


# ---------------------------------------------------------------------------------------------
# 1. throughput and Prefect's load


def throughput_row(fake: bl.Fake, cluster: Cluster, args, store: str, replicas: int,
                   rate: str) -> dict:
    wipe(cluster.url)
    fake.reset({"run_schedule": FAST})
    flags = ["--bulk", "false"]
    if rate != "off":
        r = int(rate)
        flags += ["--rate", f"{r}/s", "--burst", str(max(1, r // 10))]
    db = None if store == "sqlite" else cluster.url
    fgs = [start(fake, args, f"tp-{store}-{replicas}-{i}", db, *flags) for i in range(replicas)]
    load = bl.machine()["load"]
    try:
        total = args.batches * args.runs
        base = fake.stats()["created"]
        t0 = time.monotonic()
        ids = [fgs[i % replicas].post_batch(batch_body(args.runs))["id"] for i in range(args.batches)]
        posted_s = time.monotonic() - t0
        deadline = t0 + args.limit_s
        first_s = None
        while (created := fake.stats()["created"] - base) < total:
            if first_s is None and created > 0:
                first_s = time.monotonic() - t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"{store} x{replicas} rate {rate}: not all created")
            time.sleep(0.02)
        makespan = time.monotonic() - t0
        finals = [fgs[0].wait_final(i, limit_s=args.limit_s)["state"] for i in ids]
        buckets = fake.timeline()
        once = exactly_once(fake, ids, args.runs)
        holders = ({r for r in sql(cluster.url, "SELECT DISTINCT owner_id FROM batches").split()}
                   if db else set())
    finally:
        for fg in fgs:
            fg.stop()
    busy = [b for b in buckets if b["created"] > 0]
    if busy:
        first, last = busy[0]["t"], busy[-1]["t"]
        window = [b for b in buckets if first <= b["t"] <= last]
    else:
        window = []
    reqs = [b["requests"] for b in window]
    row = {"store": store, "replicas": replicas, "rate": rate, "runs": total,
           "batches": args.batches, "posted_s": round(posted_s, 2),
           "first_create_s": None if first_s is None else round(first_s, 2), "makespan_s": round(makespan, 2),
           "runs_per_s": round(total / makespan, 1),
           "requests_per_s_mean": round(sum(reqs) / len(reqs), 1) if reqs else None,
           "requests_busiest_s": max(reqs) if reqs else None,
           "creates_busiest_s": max((b["created"] for b in window), default=None),
           "seconds": len(window), "per_second": reqs, "states": sorted(set(finals)),
           "holders": len(holders), **once, "load": load}
    print(f"{store:6} x{replicas} rate {rate:>4}: {row['runs_per_s']:7.1f} runs/s "
          f"(makespan {makespan:.1f}s, posting {posted_s:.1f}s, first create {row['first_create_s']}s) requests/s mean "
          f"{row['requests_per_s_mean']} busiest {row['requests_busiest_s']} "
          f"exactly once {once['exactly_once']} {row['states']} holders {len(holders)} "
          f"(load {load})", flush=True)
    return row


def part_throughput(fake, cluster, args) -> list[dict]:
    rows = []
    for rep in range(1, args.reps + 1):
        for rate in args.rates.split(","):
            for store, n in (("sqlite", 1), ("pg", 1), ("pg", 2), ("pg", 3)):
                rows.append({"rep": rep, **throughput_row(fake, cluster, args, store, n, rate)})
    return rows


# ---------------------------------------------------------------------------------------------
# 2. claims


def owners(url: str) -> dict[str, int]:
    out = sql(url, "SELECT coalesce(owner_id, '-'), count(*) FROM batches "
                   "WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED') GROUP BY 1")
    return {k: int(v) for k, v in (line.split("|") for line in out.splitlines() if line)}


def part_takeover(fake, cluster, args) -> dict:
    wipe(cluster.url)
    fake.reset({"run_schedule": FAST})
    k = args.claim_batches
    a = start(fake, args, "claim-a", cluster.url)
    b = start(fake, args, "claim-b", cluster.url)
    c = start(fake, args, "claim-c", cluster.url)
    try:
        others = {replica_id(b), replica_id(c)}
        # Slow batches: 20 runs at one launch every 5 s, so they stay RUNNING throughout.
        body = batch_body(20, limits={"launches_per_second": 0.2})
        t = time.monotonic()
        for _ in range(k):
            a.post_batch(body)
        accept_s = time.monotonic() - t
        held = owners(cluster.url)
        load = bl.machine()["load"]
        signalled = time.monotonic()
        a.stop()
        exited = time.monotonic()
        polls = 0
        while True:
            held_now = owners(cluster.url)
            polls += 1
            if sum(v for o, v in held_now.items() if o in others) == k:
                break
            if time.monotonic() - exited > args.limit_s:
                raise TimeoutError(f"not all {k} batches taken: {held_now}")
        all_held = time.monotonic()
        by = {("B" if o == replica_id(b) else "C"): v for o, v in held_now.items()}
    finally:
        for fg in (b, c):
            fg.stop()
    s = all_held - exited
    row = {"batches": k, "accept_s": round(accept_s, 2), "held_by_a_before": held,
           "sigterm_to_exit_s": round(exited - signalled, 3), "exit_to_all_held_s": round(s, 3),
           "claims_per_s": round(k / s, 1), "split": by, "polls": polls, "load": load}
    print(f"takeover of {k} batches after SIGTERM: A exited in {exited - signalled:.2f}s, "
          f"B and C held all {s:.2f}s later ({k / s:.0f} claims/s), split {by} (load {load})",
          flush=True)
    return row


def part_pgbench(fake, cluster, args) -> list[dict]:
    rows = []
    script = args.out / "claim.sql"
    script.write_text(CLAIM_SQL)
    big = args.pgbench_rows
    for n, clients, per_stmt in ((big // 10, 1, 1), (big, 1, 1), (big, 3, 1), (big, 3, 50)):
        wipe(cluster.url)
        # One floodgated creates the tables, then leaves.
        start(fake, args, "pgbench-schema", cluster.url).stop()
        sql(cluster.url, "INSERT INTO batches (id, spec, state, total, created_at, updated_at) "
                         f"SELECT 'claimbench-' || g, '{{}}', 'RUNNING', 0, 0, 0 "
                         f"FROM generate_series(1, {n}) g; ANALYZE batches;")
        tx = n // (clients * per_stmt)
        load = bl.machine()["load"]
        t = time.monotonic()
        out = subprocess.run([tool("pgbench"), "-n", "-c", str(clients), "-j", str(clients),
                              "-t", str(tx), "-D", f"n={per_stmt}", "-f", str(script), cluster.url],
                             check=True, capture_output=True, text=True, timeout=args.limit_s).stdout
        elapsed = time.monotonic() - t
        claimed = int(sql(cluster.url, "SELECT count(*) FROM batches WHERE owner_id IS NOT NULL"))
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        lat = re.search(r"latency average = ([0-9.]+) ms", out)
        tps = float(m.group(1)) if m else None
        # Rows claimed over pgbench's own run time (statements / statements per second): a
        # statement may claim fewer rows than its LIMIT when the clients race.
        run_s = tx * clients / tps if tps else None
        row = {"rows": n, "rows_per_statement": per_stmt, "clients": clients,
               "statements": tx * clients, "claimed": claimed, "elapsed_s": round(elapsed, 2),
               "pgbench_s": round(run_s, 2) if run_s else None, "statements_per_s": tps,
               "claims_per_s": round(claimed / run_s, 1) if run_s else None,
               "latency_ms": float(lat.group(1)) if lat else None, "load": load}
        print(f"claim statement, {per_stmt} row(s) each, {clients} clients over {n} rows: "
              f"{row['statements_per_s']} statements/s = {row['claims_per_s']} claims/s, latency "
              f"{row['latency_ms']} ms, {claimed} claimed (load {load})", flush=True)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# 3. failover


def failover_try(fake, cluster, args, b: bl.Floodgated, ttl: int, how: str, n: int) -> dict:
    a = start(fake, args, f"fo-a-{ttl}-{how}-{n}", cluster.url, "--bulk", "false",
              "--lease-ttl-s", str(ttl))
    a_id = replica_id(a)
    job = a.post_batch(batch_body(3000, limits={"launches_per_second": 100}))["id"]
    launched = 0
    deadline = time.monotonic() + 60
    while launched < 50:
        v = view(b, job)
        launched = v["counts"]["LAUNCHED"] if v else launched
        if time.monotonic() > deadline:
            raise TimeoutError("the batch did not start")
        time.sleep(0.02)
    before = view(b, job)["counts"]["LAUNCHED"]
    load = bl.machine()["load"]
    t0 = time.monotonic()
    if how == "kill":
        a.kill()
    else:
        a.stop()
    exited = time.monotonic() - t0
    # What A left in the store: after SIGTERM it drains, so requests it had in flight at the
    # signal end as LAUNCHED in the store without another replica doing anything; the items
    # "move again" only past that. After kill -9 the store is at most a flush behind A.
    if how == "kill":
        time.sleep(0.2)  # requests A had sent may still be answered by the fake
    stored = int(sql(cluster.url, "SELECT count(*) FROM items i JOIN batches b ON b.seq = "
                                  f"i.batch_seq WHERE b.id = '{job}' AND i.state = 'LAUNCHED'"))
    threshold = max(before, stored)
    fake_base = fake.stats()["created"]
    moved = held = created = None
    errors: dict[str, int] = {}
    after = before
    deadline = t0 + ttl + 60
    while moved is None or held is None or created is None:
        v = view(b, job, errors)
        now = time.monotonic() - t0
        if moved is None and v is not None and v["counts"]["LAUNCHED"] > threshold:
            moved, after = now, v["counts"]["LAUNCHED"]
        if created is None and fake.stats()["created"] > fake_base:
            created = time.monotonic() - t0
        if held is None:
            h = sql(cluster.url, f"SELECT coalesce(owner_id, '') FROM batches WHERE id = '{job}'")
            if h and h != a_id:
                held = time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"items did not move after {how} (ttl {ttl})")
        time.sleep(0.01)
    try:
        bl.http_json(f"{b.url}/v1/batches/{job}/cancel", b"{}")
    except urllib.error.HTTPError:
        pass
    row = {"ttl_s": ttl, "signal": "kill -9" if how == "kill" else "SIGTERM", "try": n,
           "launched_before": before, "launched_after": after, "exit_s": round(exited, 3),
           "launched_in_store_after_exit": stored, "held_s": round(held, 3),
           "moved_s": round(moved, 3), "created_s": round(created, 3), "read_errors": errors,
           "load": load}
    print(f"ttl {ttl:2} {row['signal']:7} try {n}: new holder after {held:.2f}s, items moving "
          f"after {moved:.2f}s ({before}/{stored} -> {after} launched), new creates on the fake after "
          f"{created:.2f}s; {errors} reads failed; A exited "
          f"{exited:.2f}s) (load {load})", flush=True)
    return row


def part_failover(fake, cluster, args) -> list[dict]:
    rows = []
    for ttl, how, tries in ((3, "kill", args.tries), (15, "kill", args.tries_15),
                            (15, "term", args.tries)):
        if tries <= 0:
            continue
        wipe(cluster.url)
        fake.reset({"run_schedule": FAST})
        b = start(fake, args, f"fo-b-{ttl}-{how}", cluster.url, "--bulk", "false",
                  "--lease-ttl-s", str(ttl))
        try:
            for n in range(1, tries + 1):
                rows.append(failover_try(fake, cluster, args, b, ttl, how, n))
        finally:
            b.stop()
    return rows


def summary(doc: dict) -> dict:
    out = {}
    fo = doc.get("failover", [])
    for key in dict.fromkeys((r["ttl_s"], r["signal"]) for r in fo):
        rs = [r for r in fo if (r["ttl_s"], r["signal"]) == key]
        out[f"{key[1]} ttl {key[0]}"] = {"held_s": bl.spread([r["held_s"] for r in rs]),
                                         "moved_s": bl.spread([r["moved_s"] for r in rs])}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=6, help="batches per throughput run")
    ap.add_argument("--runs", type=int, default=1000, help="runs per batch")
    ap.add_argument("--rates", default="off,200", help="global --rate settings, comma-separated")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of the throughput part")
    ap.add_argument("--claim-batches", type=int, default=500)
    ap.add_argument("--pgbench-rows", type=int, default=10000)
    ap.add_argument("--tries", type=int, default=5, help="kill -9 with a 3 s TTL, and SIGTERM")
    ap.add_argument("--tries-15", type=int, default=5, help="kill -9 with the default 15 s TTL")
    ap.add_argument("--parts", default="throughput,claims,failover")
    ap.add_argument("--pg-url", help="a database the benchmark may wipe (default: its own "
                                     "throw-away cluster, scripts/pg-cluster.sh)")
    ap.add_argument("--limit-s", type=float, default=300)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-replicas"))
    ap.add_argument("--record", default="replicas")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    bl.raise_fd_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    prov = bl.provenance()
    cluster = Cluster(args.pg_url)
    fake = bl.Fake(bl.free_port(), args.out / "fake.log")
    doc = {"argv": sys.argv, "provenance": prov,
           "postgres": sql(cluster.url, "SHOW server_version"),
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k != "pg_url"}}
    parts = args.parts.split(",")
    try:
        if "throughput" in parts:
            doc["throughput"] = part_throughput(fake, cluster, args)
        if "claims" in parts:
            doc["takeover"] = part_takeover(fake, cluster, args)
            doc["claim_statement"] = part_pgbench(fake, cluster, args)
        if "failover" in parts:
            doc["failover"] = part_failover(fake, cluster, args)
    finally:
        fake.stop()
        cluster.stop()
    doc["summary"] = summary(doc)
    print(json.dumps(doc["summary"], indent=1))
    if not args.no_record:
        print(f"wrote {bl.write_result(args.record, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
