#!/usr/bin/env python3
"""Re-renders the result tables of docs/benchmarks.md from the raw results in docs/bench-results/.

    python3 tests/bench/render_tables.py            # rewrite the marked blocks in place
    python3 tests/bench/render_tables.py --check    # exit 1 if the document is out of date

Each benchmark script writes docs/bench-results/<name>.json (with the commit it ran on, the
machine's core count and load, and the command). This script replaces the text between
`<!-- bench-results:<name> -->` and `<!-- /bench-results:<name> -->` in docs/benchmarks.md with
the tables rendered from that file, so every figure in those blocks comes from a committed raw
result. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib as bl  # noqa: E402

DOC = bl.ROOT / "docs" / "benchmarks.md"
RESULTS = bl.ROOT / "docs" / "bench-results"


def provenance_line(doc: dict) -> str:
    p = doc.get("provenance", {})
    commit = (p.get("commit") or "?")[:12] + (" (with uncommitted changes)" if p.get("dirty") else "")
    argv = " ".join(Path(doc["argv"][0]).name if i == 0 else a for i, a in enumerate(doc.get("argv", [])))
    return (f"Measured {p.get('utc', '?')} at commit `{commit}` on {p.get('nproc', '?')} cores, load "
            f"average {p.get('load_start', '?')} at the start and {p.get('load_end', '?')} at the end; "
            f"command `{argv}`; raw results `docs/bench-results/{doc['_name']}.json`.")


def render_overload(doc: dict) -> list[str]:
    import overload as ov  # the same table code as the benchmark's own report
    rows = doc["rows"]
    out = [provenance_line(doc), ""]
    probe = doc.get("capacity_probe", {})
    out += [f"Capacity (ideal = children / capacity): **{doc['capacity']:.1f} creates/s**, the best of "
            + ", ".join(f"{k} in flight {v:.0f}/s" for k, v in probe.items()) + ".", ""]
    cfg = doc["overload_config"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == variant]
        if variant in ("faults", "faults+lost"):
            title = "unlimited server, 20% 503 + 5% dropped connections" + (
                " + 2% lost responses" if variant == "faults+lost" else "")
        else:
            title = (f"overload, overflow={variant} (C={cfg['capacity']}, {cfg['service_time_ms']:g} ms + "
                     f"{cfg['service_time_per_queued_ms']:g} ms x queue, queue limit {cfg['queue_limit']})")
        out += ov.table(vr, title)
        if variant in ("faults", "faults+lost"):
            out += budget_lines([r for r in vr if r["label"] in ("c", "c-nobulk")], ov)
    return out


def budget_lines(rows: list[dict], ov) -> list[str]:
    """The retry budget, checked in requests as it charges them (one token per retried request,
    a failed bulk request one token for all its runs): create requests beyond one per child."""
    if not rows:
        return []
    out = ["Retry budget of (c): bound 0.2 x children + 10/s x (batch time + 10 s); create requests "
           "(single + bulk) beyond one per child, i.e. retried requests plus bulk probes:", "",
           "| pattern | children | create requests, single + bulk | beyond one per child | bound | within? | "
           "retried runs (`floodgate_retries_total`) |", "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        bulk = r.get("bulk_requests", 0)
        extra, bound = ov.budget_check(r)
        out.append(f"| {ov.pattern_name(r['label'])} | {r['children']} | {r['create_requests']:.0f} + {bulk:.0f} | "
                   f"{extra:.0f} | {bound:.0f} | {'within' if extra <= bound else '**OVER**'} | {r['retries']:.0f} |")
    return out + [""]


def render_api_economy(doc: dict) -> list[str]:
    rows = doc["rows"]
    out = [provenance_line(doc), "",
           "| pattern | parent flow | children | API requests (median) | per child: median [min-max] | elapsed s |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
    for label in dict.fromkeys(r["label"] for r in rows):
        rs = [r for r in rows if r["label"] == label]
        req = bl.spread([r["requests"] for r in rs])
        per = bl.spread([r["per_child"] for r in rs])
        el = bl.spread([r["elapsed_s"] for r in rs])
        per_s = (f"{per['median']:.3f}" if per["n"] == 1
                 else f"{per['median']:.3f} [{per['min']:.3f}-{per['max']:.3f}]")
        parent = "yes" if "subflow" in label else "no"
        out.append(f"| {label} | {parent} | {rs[0]['children']} | {req['median']:.0f} | {per_s} | "
                   f"{el['median']:.1f} |")
    life = doc.get("life_s")
    if life is not None:
        out.append(f"| run_deployment, analytic | no | - | - | "
                   f"{doc['analytic_run_deployment_no_parent_per_child']} | - |")
        out.append(f"| run_deployment+subflow, analytic | yes | - | - | "
                   f"{doc['analytic_run_deployment_per_child']} | - |")

    def med(label: str):
        return bl.spread([r["per_child"] for r in rows if r["label"] == label])["median"]
    out.append("")
    for name, fg, rd in (("without a parent", "floodgate", "run_deployment (simulated)"),
                         ("with a parent", "floodgate+subflow", "run_deployment+subflow (simulated)")):
        a, b = med(fg), med(rd)
        if a and b:
            out.append(f"- Like for like, {name}: run_deployment {b:.2f} requests per child, floodgate "
                       f"{a:.3f} ({b / a:.0f}x).")
    return out


def render_launch_throughput(doc: dict) -> list[str]:
    rows = doc["rows"]
    by = {(r["rep"], r["label"]): r for r in rows}
    reps = sorted({r["rep"] for r in rows})
    out = [provenance_line(doc), "",
           "| rep | load | wrk req/s | loop req/s | fg-fixed runs/s | fg-adapt runs/s | fg-fixed / loop | "
           "fg-adapt / loop | loop CPU us/req | fg-fixed CPU us/launch | fg-fixed / loop CPU | "
           "fg-adapt in flight at the end |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ratios: dict[str, list[float]] = {"fixed": [], "adapt": [], "cpu": []}
    for rep in reps:
        w, lo, fx, ad = (by.get((rep, k), {}) for k in ("wrk", "loop", "fg-fixed", "fg-adapt"))
        if not (lo.get("rate") and fx.get("rate") and ad.get("rate")):
            continue
        ratios["fixed"].append(fx["rate"] / lo["rate"])
        ratios["adapt"].append(ad["rate"] / lo["rate"])
        ratios["cpu"].append(fx["client_cpu_us"] / lo["client_cpu_us"])
        out.append(f"| {rep} | {lo.get('load', '-')} | {w.get('rate', 0):,.0f} | {lo['rate']:,.0f} | "
                   f"{fx['rate']:,.0f} | {ad['rate']:,.0f} | {ratios['fixed'][-1]:.2f} | "
                   f"{ratios['adapt'][-1]:.2f} | {lo['client_cpu_us']:.0f} | {fx['client_cpu_us']:.0f} | "
                   f"{ratios['cpu'][-1]:.2f} | {ad.get('limit_at_end', float('nan')):.0f} |")
    if ratios["fixed"]:
        med = {k: statistics.median(v) for k, v in ratios.items()}
        out.append(f"| median | | | | | | {med['fixed']:.2f} | {med['adapt']:.2f} | | | {med['cpu']:.2f} | |")
    fg = [r for r in rows if r["label"].startswith("fg-")]
    once = all(r["state"] == "COMPLETED" and r["fake_created"] == r["runs"] for r in fg)
    extra = sum(r["fake_creates"] - r["runs"] for r in fg)
    out += ["", "(Ratios are taken within each repetition, measured back to back; the median row is the "
            "median of those ratios.) Every floodgated batch COMPLETED with exactly one run per item on "
            f"the fake: {'yes' if once else 'NO'}; create requests beyond one per item, all batches: {extra}. "
            "Peak RSS while launching "
            f"{min(r['hwm_mb'] for r in fg):.0f}-{max(r['hwm_mb'] for r in fg):.0f} MB."]
    acc = [r for r in rows if r["label"] == "accept100k"]
    if acc:
        out += ["", "Accepting a 100,000-run batch (a fresh floodgated `--bulk false`, `curl` time of the POST):", "",
                "| rep | answer | POST time | RSS before | peak RSS after the POST | peak RSS after the launch | "
                "RSS after the launch | batch |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in acc:
            out.append(f"| {r['rep']} | {r['status']} | {r['accept_s']:.2f} s | {r['rss0_mb']} MB | "
                       f"{r['hwm_after_post_mb']} MB | {r['hwm_after_batch_mb']} MB | {r['rss_after_batch_mb']} MB | "
                       f"{r['final_state']} |")
    return out


def render_launch_split_ab(doc: dict) -> list[str]:
    reps = doc["per_rep"]
    out = [provenance_line(doc), "",
           f"Before: `{doc['before_commit'][:12]}`; after: `{doc['after_commit'][:12]}`.", "",
           "| rep | load | before runs/s | loop req/s | after runs/s | before CPU us/launch | "
           "loop CPU us/req | after CPU us/launch | after/before rate | after/loop rate | "
           "after/loop CPU | before/loop CPU |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(r: dict) -> str:
        return (f"| {r['rep']} | {r['load']} | {r['before_rate']:,.0f} | {r['loop_rate']:,.0f} | "
                f"{r['after_rate']:,.0f} | {r['before_cpu_us']:.0f} | {r['loop_cpu_us']:.0f} | "
                f"{r['after_cpu_us']:.0f} | {r['after_over_before_rate']:.2f} | "
                f"{r['after_over_loop_rate']:.2f} | {r['after_over_loop_cpu']:.2f} | "
                f"{r['before_over_loop_cpu']:.2f} |")
    out += [row(r) for r in reps]
    if reps:
        med = {k: bl.spread([r[k] for r in reps])["median"] for k in reps[0]
               if k not in ("rep", "load", "all_created")}
        out.append(row({"rep": "median", "load": "", **med}))
        out += ["", "(Medians column by column; the ratio columns are medians of the per-repetition "
                "ratios, each taken within one repetition.) Every batch COMPLETED with exactly one "
                f"create per run: {'yes' if all(r['all_created'] for r in reps) else 'NO'}."]
    return out


def render_seed_scenario(doc: dict) -> list[str]:
    """Section 4: the seed's parent flow on a real Prefect, gather against floodgate
    (tests/bench/seed_scenario.py --out)."""
    import seed_scenario as ss  # the same table as the benchmark prints
    p = doc.get("provenance", {})
    commit = (p.get("commit") or "?")[:12] + (" (with uncommitted changes)" if p.get("dirty") else "")
    commands = doc.get("commands") or {"": " ".join(doc.get("argv", []))}
    cmd = ", ".join(f"`{c}`" + (f" (run {k})" if k else "") for k, c in commands.items())
    out = [f"Measured {p.get('utc', '?')} at commit `{commit}` on {p.get('nproc', '?')} cores, load "
           f"average {p.get('load_start', '?')} at the start and {p.get('load_end', '?')} at the end; "
           f"{'commands' if len(commands) > 1 else 'command'} {cmd}; raw results "
           f"`docs/bench-results/{doc['_name']}.json`.", ""]
    if doc.get("note"):
        out += [doc["note"], ""]
    out.append(ss.table(doc["results"], doc["args"]["children"]))
    return out


def render_start_pacing(doc: dict) -> list[str]:
    """Issue 17: crashes and makespan with and without start pacing (tests/bench/start_pacing.py)."""
    rows = doc["rows"]
    out = [provenance_line(doc), "",
           "| rep | tolerance | start_pacing | batch | children COMPLETED | runs created | crashed runs | "
           "makespan s | requests per child | pace cuts | pace at the end, launches/s | load at start |",
           "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        pace = r.get("start_pace") or {}
        lps = pace.get("launches_per_second")
        out.append(f"| {r['rep']} | {r['tolerance']} | {'on' if r['pacing'] else 'off'} | {r['state']} | "
                   f"{r['counts'].get('COMPLETED', 0)} | {r['runs_created']} | {r['crashed_runs']} | "
                   f"{r['makespan_s']:.1f} | {r['requests_per_child']:.2f} | {pace.get('cuts', 0)} | "
                   f"{'-' if lps is None else f'{lps:.1f}'} | {r['load'].split()[0]} |")
    out += ["", "Medians per setting, and off over on:", "",
            "| tolerance | start_pacing | batches | crashed runs | runs created | makespan s | requests per child |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: |"]

    def med(rs: list[dict], key: str):
        return bl.spread([r[key] for r in rs])["median"]
    for tol in dict.fromkeys(r["tolerance"] for r in rows):
        by = {p: [r for r in rows if r["tolerance"] == tol and r["pacing"] == p] for p in (True, False)}
        for p in (True, False):
            rs = by[p]
            if not rs:
                continue
            states = ", ".join(f"{n} {s}" for s, n in sorted(
                {s: sum(1 for r in rs if r["state"] == s) for s in {r["state"] for r in rs}}.items()))
            out.append(f"| {tol} | {'on' if p else 'off'} | {states} | {med(rs, 'crashed_runs'):.0f} | "
                       f"{med(rs, 'runs_created'):.0f} | {med(rs, 'makespan_s'):.1f} | "
                       f"{med(rs, 'requests_per_child'):.2f} |")
        if by[True] and by[False]:
            ratio = {k: med(by[False], k) / med(by[True], k) for k in
                     ("crashed_runs", "runs_created", "makespan_s", "requests_per_child")}
            out.append(f"| {tol} | off / on | | {ratio['crashed_runs']:.1f}x | {ratio['runs_created']:.1f}x | "
                       f"{ratio['makespan_s']:.2f}x | {ratio['requests_per_child']:.1f}x |")
    return out


def render_backlog_gating(doc: dict) -> list[str]:
    """Issue 17: peak backlog, makespan and requests per child with and without backlog gating
    (tests/bench/backlog_gating.py)."""
    rows = doc["rows"]
    out = [provenance_line(doc), "",
           "| rep | max_backlog | batch | children COMPLETED | runs created | distinct keys | "
           "peak waiting to start | largest max_backlog shown | makespan s | requests per child | load at start |",
           "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        mb = r.get("peak_max_backlog")
        out.append(f"| {r['rep']} | {r['setting']} | {r['state']} | {r['counts'].get('COMPLETED', 0)} | "
                   f"{r['runs_created']} | {r['distinct_keys']} | {r['peak_waiting']} | "
                   f"{'-' if mb is None else mb} | {r['makespan_s']:.1f} | {r['requests_per_child']:.2f} | "
                   f"{r['load'].split()[0]} |")

    def med(rs: list[dict], key: str):
        return bl.spread([r[key] for r in rs])["median"]
    by = {s: [r for r in rows if r["setting"] == s] for s in ("off", "derived")}
    out += ["", "Medians per setting, and derived over off:", "",
            "| max_backlog | batches | peak waiting to start | makespan s | requests per child |",
            "| --- | --- | ---: | ---: | ---: |"]
    for s, rs in by.items():
        if not rs:
            continue
        states = ", ".join(f"{n} {st}" for st, n in sorted(
            {st: sum(1 for r in rs if r["state"] == st) for st in {r["state"] for r in rs}}.items()))
        out.append(f"| {s} | {states} | {med(rs, 'peak_waiting'):.0f} | {med(rs, 'makespan_s'):.1f} | "
                   f"{med(rs, 'requests_per_child'):.2f} |")
    if by["off"] and by["derived"]:
        ratio = {k: med(by["derived"], k) / med(by["off"], k)
                 for k in ("peak_waiting", "makespan_s", "requests_per_child")}
        out.append(f"| derived / off | | {ratio['peak_waiting']:.2f}x | {ratio['makespan_s']:.3f}x | "
                   f"{ratio['requests_per_child']:.2f}x |")
    return out


def render_replicas(doc: dict) -> list[str]:
    """Issue 16: replicas on PostgreSQL next to SQLite, claims, failover (tests/bench/replicas.py)."""
    out = [provenance_line(doc) + f" PostgreSQL {doc.get('postgres', '?')}.", ""]
    rows = doc.get("throughput", [])
    if rows:
        def after_first(r: dict) -> float:
            return r["runs"] / max(1e-9, r["makespan_s"] - (r["first_create_s"] or 0))

        def bound(r: dict) -> str:
            rate = r["rate"]
            return "-" if rate == "off" else str(int(rate) + max(1, int(rate) // 10) + r["replicas"])

        def label(r: dict) -> str:
            return "SQLite" if r["store"] == "sqlite" else "PostgreSQL"
        out += ["Throughput and the load on Prefect (the fake), one configuration after the other, "
                f"{rows[0]['batches']} batches x {rows[0]['runs'] // rows[0]['batches']:,} runs, "
                "`--bulk false`:", "",
                "| rep | --rate | store | replicas | runs/s | first create s | runs/s after the first "
                "create | requests/s, mean | busiest second | bucket's bound | exactly once | load at start |",
                "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for r in rows:
            rate_s = "off" if r["rate"] == "off" else f"{r['rate']}/s"
            out.append(
                f"| {r.get('rep', 1)} | {rate_s} | {label(r)} | {r['replicas']} | {r['runs_per_s']:,.0f} | "
                f"{r['first_create_s']:.2f} | {after_first(r):,.0f} | {r['requests_per_s_mean']:,.0f} | "
                f"{r['requests_busiest_s']:,} | {bound(r)} | {'yes' if r['exactly_once'] else 'NO'} "
                f"({r['runs_created']:,} runs, {r['distinct_keys']:,} keys) | {r['load'].split()[0]} |")
        out += ["", "Medians over the repetitions, and over one replica on SQLite:", "",
                "| --rate | store | replicas | runs/s | x SQLite | first create s | runs/s after the "
                "first create | x SQLite | busiest second, worst | bucket's bound |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

        def med(rs: list[dict], f) -> float:
            return bl.spread([f(r) for r in rs])["median"]
        for rate in dict.fromkeys(r["rate"] for r in rows):
            groups = {}
            for r in rows:
                if r["rate"] == rate:
                    groups.setdefault((r["store"], r["replicas"]), []).append(r)
            base = groups.get(("sqlite", 1))
            b_rate = med(base, lambda r: r["runs_per_s"]) if base else None
            b_after = med(base, after_first) if base else None
            for (store, n), rs in groups.items():
                rps, aft = med(rs, lambda r: r["runs_per_s"]), med(rs, after_first)
                rate_s = "off" if rate == "off" else f"{rate}/s"
                out.append(f"| {rate_s} | {label(rs[0])} | {n} | {rps:,.0f} | "
                           f"{rps / b_rate if b_rate else float('nan'):.2f} | "
                           f"{med(rs, lambda r: r['first_create_s']):.2f} | {aft:,.0f} | "
                           f"{aft / b_after if b_after else float('nan'):.2f} | "
                           f"{max(r['requests_busiest_s'] for r in rs):,} | {bound(rs[0])} |")
        out.append("")
    t = doc.get("takeover")
    if t:
        split = ", ".join(f"{k} {v}" for k, v in sorted(t["split"].items()))
        out += [f"Takeover after SIGTERM: {t['batches']} RUNNING batches released by A (which exited "
                f"{t['sigterm_to_exit_s']:.2f} s after the signal) were all held by B and C "
                f"{t['exit_to_all_held_s']:.2f} s after A's exit ({split}): **{t['claims_per_s']:,.0f} "
                f"claims/s** end to end, load {t['load'].split()[0]} at the start.", ""]
    cs = doc.get("claim_statement", [])
    if cs:
        out += ["The claim statement alone (pgbench, floodgated's claim `UPDATE ... FOR UPDATE SKIP LOCKED`, "
                "until every row is claimed):", "",
                "| unowned rows | rows per statement | clients | statements | statements/s | claims/s | "
                "mean latency ms | rows claimed | load at start |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in cs:
            out.append(f"| {r['rows']:,} | {r['rows_per_statement']} | {r['clients']} | {r['statements']:,} | "
                       f"{r['statements_per_s']:,.0f} | {r['claims_per_s']:,.0f} | {r['latency_ms']:.1f} | "
                       f"{r['claimed']:,} | {r['load'].split()[0]} |")
        out.append("")
    fo = doc.get("failover", [])
    if fo:
        out += ["Failover, each try from the signal to A:", "",
                "| signal | --lease-ttl-s | try | another replica holds the batch, s | its items move "
                "again, s | a new run created, s | LAUNCHED: before, in the store after A, then | "
                "failed reads through B | load at start |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
        for r in fo:
            errs = ", ".join(f"{v} x {k}" for k, v in sorted(r["read_errors"].items())) or "-"
            created = r.get("created_s")
            stored = r.get("launched_in_store_after_exit", "?")
            out.append(f"| {r['signal']} | {r['ttl_s']} | {r['try']} | {r['held_s']:.2f} | {r['moved_s']:.2f} | "
                       f"{'-' if created is None else f'{created:.2f}'} | {r['launched_before']}, {stored} -> "
                       f"{r['launched_after']} | {errs} | {r['load'].split()[0]} |")
        out += ["", "| signal | --lease-ttl-s | tries | holder, median [min-max] s | items move, median "
                "[min-max] s |", "| --- | ---: | ---: | ---: | ---: |"]
        for key in dict.fromkeys((r["signal"], r["ttl_s"]) for r in fo):
            rs = [r for r in fo if (r["signal"], r["ttl_s"]) == key]
            h = bl.spread([r["held_s"] for r in rs])
            m = bl.spread([r["moved_s"] for r in rs])
            out.append(f"| {key[0]} | {key[1]} | {len(rs)} | {h['median']:.2f} [{h['min']:.2f}-{h['max']:.2f}] | "
                       f"{m['median']:.2f} [{m['min']:.2f}-{m['max']:.2f}] |")
    return out


RENDER = {"overload": render_overload, "api_economy": render_api_economy,
          "launch_throughput": render_launch_throughput, "launch_split_ab": render_launch_split_ab,
          "launch_http_read_ab": render_launch_split_ab}
RENDER["seed_scenario"] = render_seed_scenario
RENDER["seed_scenario_quiet"] = render_seed_scenario
RENDER["seed_scenario_nogate"] = render_seed_scenario
RENDER["start_pacing"] = render_start_pacing
RENDER["backlog_gating"] = render_backlog_gating
RENDER["replicas"] = render_replicas


def render_batch_memory(doc: dict) -> list[str]:
    rows = doc["rows"]
    out = [provenance_line(doc), ""]
    if doc.get("old_build"):
        out += [f"\"old\" is the build before items were paged (commit `{doc['old_build'][:12]}`), "
                "run in the same session.", ""]
    out += ["| build | runs | sent as | accept | peak RSS while accepting | RSS after accepting | "
            "peak RSS while launching | RSS at the end | launch | state, creates on the fake | load |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        sent = "one body" if r["chunks"] == 1 else f"{r['chunks']} chunks"
        out.append(f"| {r['build']} | {r['n']:,} | {sent} | {r['accept_s']:.1f} s | {r['peak_accept_mb']:.0f} MB | "
                   f"{r['rss_after_accept_mb']:.0f} MB | {r['peak_launch_mb']:.0f} MB | {r['rss_end_mb']:.0f} MB | "
                   f"{r['launch_s']:.0f} s | {r['state']}, {r['creates_on_fake']:,} | {r['load_start'].split()[0]} |")
    before = [r["rss_before_mb"] for r in rows]
    out += ["", f"Store: {doc['store']}; RSS before the first request {min(before):.0f}-{max(before):.0f} MB; "
            "peaks sampled every 0.1 s from `VmRSS`."]
    return out


RENDER["batch_memory"] = render_batch_memory


def render_store_timing(doc: dict) -> list[str]:
    rows = doc["rows"]
    out = [provenance_line(doc), "",
           f"Medians of {doc['rounds']} alternating rounds; CPU is the calling thread's only (for PostgreSQL "
           "the server's work does not show there).", "",
           "| step | SQLite wall ms | PostgreSQL wall ms | PG / SQLite | SQLite cpu ms | PG client cpu ms |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]

    def med(step: str, store: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["step"] == step and r["store"] == store)
    for step in dict.fromkeys(r["step"] for r in rows):
        sq, pg = med(step, "sqlite", "wall_ms"), med(step, "postgresql", "wall_ms")
        out.append(f"| {step} | {sq:,.2f} | {pg:,.2f} | {pg / sq:.1f}x | {med(step, 'sqlite', 'cpu_ms'):,.2f} | "
                   f"{med(step, 'postgresql', 'cpu_ms'):,.2f} |")
    loads = [r["load"] for r in rows]
    out += ["", f"1-minute load average before each binary: {min(loads):.2f}-{max(loads):.2f}."]
    return out


def render_request_memory(doc: dict) -> list[str]:
    out = [provenance_line(doc), "",
           "| scenario | body | answers | RSS before | peak (`VmHWM`) | (peak - before) / bytes sent | RSS 2 s after | load |",
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["rows"]:
        answers = ", ".join(str(a) for a in r["answers"])
        out.append(f"| {r['scenario']} | {r['body_mib']:.1f} MiB x {r['copies']} | {answers} | "
                   f"{r['rss_before_mb']:.1f} MB | {r['peak_mb']:.0f} MB | {r['peak_over_body']:.1f}x | "
                   f"{r['rss_after_mb']:.1f} MB | {r['load']:.2f} |")
    return out


def render_retry_tail(doc: dict) -> list[str]:
    """The faults+lost run alone, per setting (tests/bench/retry_tail.py)."""
    import overload as ov  # its fmt_s: median [min-max]
    rows, n = doc["rows"], doc["children"]
    marks = list(rows[0]["created_at_s"]) if rows else []
    heads = " | ".join(f"{float(m) * 100:g}% created, s" for m in marks)
    out = [provenance_line(doc), "",
           f"{n:,} children; fake: " + ", ".join(f"{k} {v}" for k, v in doc["fake_config"].items()) + ".", "",
           f"| rep | setting | batch | created | duplicates | {heads} | makespan s | retries held back by the budget "
           "| create requests | load |",
           "| ---: | --- | --- | ---: | ---: | " + " | ".join("---:" for _ in marks) + " | ---: | ---: | ---: | ---: |"]

    def sec(v):
        return "-" if v is None else f"{v:.1f}"
    for r in rows:
        out.append(f"| {r['rep']} | {r['setting']} | {r['state']} | {r['children_created']:,} | {r['duplicates']} | "
                   + " | ".join(sec(r["created_at_s"][m]) for m in marks)
                   + f" | {r['makespan_s']:.1f} | {r['retries_deferred']:.0f} | {r['create_requests']:,.0f} | "
                   f"{r['load']:.2f} |")
    out += ["", "Medians [min-max] per setting:", "",
            f"| setting | runs | {heads} | makespan s | retries held back |",
            "| --- | ---: | " + " | ".join("---:" for _ in marks) + " | ---: | ---: |"]

    def cell(values: list[float], digits: int = 1) -> str:
        return ov.fmt_s(bl.spread(values), digits)
    for setting in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == setting]
        out.append(f"| {setting} | {len(rs)} | "
                   + " | ".join(cell([r["created_at_s"][m] for r in rs]) for m in marks)
                   + f" | {cell([r['makespan_s'] for r in rs])} | {cell([r['retries_deferred'] for r in rs], 0)} |")
    return out


RENDER["store_timing"] = render_store_timing
RENDER["request_memory"] = render_request_memory
RENDER["retry_tail"] = render_retry_tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = DOC.read_text()
    new = text
    for path in sorted(RESULTS.glob("*.json")):
        name = path.stem
        if name not in RENDER:
            continue
        doc = json.loads(path.read_text())
        doc["_name"] = name
        block = "\n".join(RENDER[name](doc))
        pat = re.compile(rf"(<!-- bench-results:{re.escape(name)} -->\n).*?(<!-- /bench-results:{re.escape(name)} -->)",
                         re.S)
        if not pat.search(new):
            print(f"no <!-- bench-results:{name} --> block in {DOC}", file=sys.stderr)
            continue
        new = pat.sub(lambda m: m.group(1) + block + "\n" + m.group(2), new)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run tests/bench/render_tables.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
