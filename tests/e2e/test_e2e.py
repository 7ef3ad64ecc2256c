"""floodgate against a real Prefect 3 server, counted through Prefect's own REST API.

The tests run in file order: the cheap ones first, the big batch next, and the Prefect outage
last (it restarts the session's server). Every child floodgate creates carries the tag
`floodgate-batch:{batch_id}` and the idempotency key `floodgate:{batch_id}:{index}` (`:rN`
suffix for a re-launch of a crashed child), which is what "exactly once" is counted by.

Where the children run:
- (b) as_subflow, (c) cancel and (d) errors: `demo-flow/demo` on the process worker, each child
  a real flow run process with Prefect's engine (the thing under test is Prefect's own
  behaviour: state mirroring onto the placeholder, a worker stopping a cancelled process);
- (a) 200 children: `demo-flow/light` on the same worker; the worker starts a process per
  child, which runs the flow function through `flows/light_engine.py` (states through the
  API, no Prefect import): 0.2 CPU-s a child instead of ~5;
- (e) floodgated SIGKILLed and (f) Prefect stopped: `demo-flow/idle` on a pool no worker
  polls, finished by a `Completer` (conftest.py) through the API, so the timing of the kills
  and of the outage is about floodgate and Prefect's API, not process start-up.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import time
import urllib.request
import uuid

import pytest

from helpers import FINAL_PREFECT_STATES, Completer, HttpError, http, wait_until

BIG_N = int(os.environ.get("FG_E2E_BIG_N", "200"))
BIG_DEPLOYMENT = os.environ.get("FG_E2E_BIG_DEPLOYMENT", "demo-flow/light")
NOT_LAUNCHED = ("PENDING", "RETRY_WAIT")


def tag_of(batch_id: str) -> str:
    return f"floodgate-batch:{batch_id}"


def demo_runs(n: int, sleep_s: float) -> list[dict]:
    return [{"parameters": {"x": i, "sleep_s": sleep_s}} for i in range(n)]


def progress_printer(label: str):
    last = {"t": 0.0}

    def show(b):
        now = time.monotonic()
        if now - last["t"] >= 15 or b["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
            last["t"] = now
            counts = {k: v for k, v in b["counts"].items() if v}
            print(f"[e2e] {label}: {b['state']} {counts}", flush=True)
    return show


def error_summary(fg, batch_id: str) -> str:
    runs = fg.client.runs(batch_id)
    states = collections.Counter(r["state"] for r in runs)
    errors = collections.Counter((r["last_error"] or "")[:160] for r in runs if r["last_error"])
    return f"item states {dict(states)}; errors {dict(errors.most_common(3))}"


def not_launched(counts: dict) -> int:
    """Items not launched yet: PENDING, or RETRY_WAIT after a failed create."""
    return sum(counts.get(s, 0) for s in NOT_LAUNCHED)


def metrics_summary(fg) -> str:
    """floodgated's own count of its Prefect requests and retries (for the log)."""
    try:
        text = urllib.request.urlopen(fg.url + "/metrics", timeout=10).read().decode()
    except OSError as e:
        return f"(no /metrics: {e})"
    keep = [line for line in text.splitlines()
            if line.startswith(("floodgate_retries_total", "floodgate_prefect_requests_total"))
            and not line.rstrip().endswith(" 0")]
    return "; ".join(line.replace("floodgate_", "") for line in keep)


def counts_while_running(fg, batch_id: str) -> dict:
    """The batch's counts; fails at once (instead of waiting on) if it already ended."""
    b = fg.client.batch(batch_id)
    if b["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
        pytest.fail(f"batch {batch_id} ended {b['state']} early: {error_summary(fg, batch_id)}")
    return b["counts"]


def assert_final_completed(fg, final: dict, n: int):
    assert final["state"] == "COMPLETED" and final["counts"]["COMPLETED"] == n, (
        f"batch ended {final['state']} {({k: v for k, v in final['counts'].items() if v})}: "
        f"{error_summary(fg, final['id'])}")


def assert_exactly_once(prefect, fg, batch_id: str, n: int, expect_state: str | None = "COMPLETED",
                        allow_relaunched: bool = False):
    """Every index has exactly one live child in Prefect; nothing duplicated; nothing lost.
    Re-launches of crashed children (`:rN` keys, listed by floodgate as earlier runs) are only
    allowed with allow_relaunched: none of the batches here asks for them, and none of their
    children can crash, so an earlier run would be a second child.

    Returns (floodgate runs, Prefect flow runs) for further checks."""
    runs = fg.client.runs(batch_id)
    assert len(runs) == n, f"floodgate lists {len(runs)} runs, want {n}"
    assert sorted(r["index"] for r in runs) == list(range(n))
    flow_runs = prefect.flow_runs_by_tag(tag_of(batch_id))
    keys = [r["idempotency_key"] for r in flow_runs]
    dupes = [k for k, c in collections.Counter(keys).items() if c > 1]
    assert not dupes, f"idempotency keys used twice in Prefect: {dupes[:5]}"
    # Earlier (crashed, re-launched) runs are listed by floodgate; count them in.
    earlier = sum(len(r.get("earlier_runs") or []) for r in runs)
    assert allow_relaunched or earlier == 0, (
        f"{earlier} re-launched children: {[(r['index'], r['earlier_runs']) for r in runs if r.get('earlier_runs')][:5]}")
    assert len(flow_runs) == n + earlier, (
        f"Prefect has {len(flow_runs)} flow runs tagged {tag_of(batch_id)}, "
        f"want {n} (+{earlier} re-launched)")
    base_keys = {f"floodgate:{batch_id}:{i}" for i in range(n)}
    assert base_keys <= set(keys), f"missing keys: {sorted(base_keys - set(keys))[:5]}"
    by_id = {fr["id"]: fr for fr in flow_runs}
    fg_ids = [r["flow_run_id"] for r in runs]
    assert None not in fg_ids, [r for r in runs if r["flow_run_id"] is None][:3]
    assert len(set(fg_ids)) == n, "two items share a flow run"
    assert set(fg_ids) <= set(by_id), "floodgate names flow runs Prefect does not have"
    for r in runs:
        fr = by_id[r["flow_run_id"]]
        assert fr["parameters"].get("x") == r["index"], (r, fr["parameters"])
        if expect_state:
            assert r["state"] == expect_state, r
            assert fr["state_type"] == expect_state, (r, fr["state_type"], fr["state_name"])
    return runs, flow_runs


# ---------------------------------------------------------------------------------------
# (d) permanent errors carry Prefect's own message


def test_d_launch_failed_carries_prefects_message(worker, floodgate):
    prefect = worker.api
    # What Prefect itself answers, to compare floodgate's last_error with.
    with pytest.raises(HttpError) as nf:
        prefect.deployment("no-such-flow/no-such-deployment")
    assert nf.value.status == 404
    not_found_detail = nf.value.json()["detail"]
    dep = prefect.deployment("demo-flow/demo")
    with pytest.raises(HttpError) as bad:
        prefect.post(f"/deployments/{dep['id']}/create_flow_run",
                     {"parameters": {"x": "not-a-number"},
                      "idempotency_key": f"e2e-probe-{uuid.uuid4()}"})
    assert bad.value.status == 409
    schema_detail = bad.value.json()["detail"]

    fg = floodgate.client
    # A batch whose deployment does not exist.
    b1 = fg.submit({"deployment": "no-such-flow/no-such-deployment",
                    "runs": [{"parameters": {"x": 1}}, {"parameters": {"x": 2}}],
                    "tolerated_failure_percentage": 100})
    # One batch mixing a good run, a run the schema rejects, and a per-run unknown deployment.
    b2 = fg.submit({"deployment": "demo-flow/demo",
                    "runs": [{"parameters": {"x": 0, "sleep_s": 0.1}},
                             {"parameters": {"x": "not-a-number"}},
                             {"parameters": {"x": 2}, "deployment": "no-such-flow/other"},
                             {"parameters": {"sleep_s": 0.1}}],
                    "tolerated_failure_percentage": 100})
    f1 = fg.wait_final(b1["id"], 120)
    f2 = fg.wait_final(b2["id"], 300, progress_printer("d mixed"))

    runs1 = fg.runs(b1["id"])
    assert [r["state"] for r in runs1] == ["LAUNCH_FAILED"] * 2, runs1
    for r in runs1:
        assert r["flow_run_id"] is None
        assert r["last_error"] and not_found_detail in r["last_error"], r
    assert f1["counts"]["LAUNCH_FAILED"] == 2

    runs2 = {r["index"]: r for r in fg.runs(b2["id"])}
    print(f"[e2e] d: batch states {f1['state']} / {f2['state']}; errors:")
    for r in list(runs1) + list(runs2.values()):
        print(f"[e2e]   {r['state']}: {r['last_error']}")
    assert runs2[0]["state"] == "COMPLETED", runs2[0]
    assert runs2[1]["state"] == "LAUNCH_FAILED", runs2[1]
    # Prefect's single create says "Error creating flow run: Validation failed for field 'x'.
    # Failure reason: ..."; its bulk create says "Parameter validation failed: Validation ...".
    # Either way the validator's own sentence must reach last_error.
    core = schema_detail.split(": ", 1)[-1]
    assert core in runs2[1]["last_error"], (schema_detail, runs2[1])
    assert "not-a-number" in runs2[1]["last_error"], runs2[1]
    assert runs2[2]["state"] == "LAUNCH_FAILED", runs2[2]
    assert not_found_detail in runs2[2]["last_error"], runs2[2]
    assert runs2[3]["state"] == "LAUNCH_FAILED", runs2[3]   # required x missing: 409
    assert "'x' is a required property" in runs2[3]["last_error"], runs2[3]
    # Permanent errors are not retried (an unknown deployment fails at name resolution,
    # before any create: 0 attempts).
    for i in (1, 2, 3):
        assert runs2[i]["attempts"] <= 1, runs2[i]
    # Prefect holds exactly the one run that could be created.
    assert len(prefect.flow_runs_by_tag(tag_of(b1["id"]))) == 0
    created = prefect.flow_runs_by_tag(tag_of(b2["id"]))
    assert len(created) == 1 and created[0]["parameters"]["x"] == 0


# ---------------------------------------------------------------------------------------
# (b) as_subflow: placeholders in the parent, parent_task_run_id on the children


def check_subflow_tree(prefect, fg, batch_id: str, parent_id: str, n: int):
    runs = fg.client.runs(batch_id)
    assert len(runs) == n
    children = prefect.flow_runs_by_id([r["flow_run_id"] for r in runs])
    assert len(children) == n
    task_runs = prefect.task_runs_of(parent_id)
    placeholders = {t["id"]: t for t in task_runs
                    if t["task_key"].startswith("prefect.deployments.flow_runs.run_deployment")}
    assert len(placeholders) == n, (
        f"parent {parent_id} has {len(task_runs)} task runs, {len(placeholders)} placeholders; "
        f"want {n}: {[(t['task_key'], t['dynamic_key']) for t in task_runs][:5]}")
    ptr = [c["parent_task_run_id"] for c in children]
    assert None not in ptr, "a child has no parent_task_run_id"
    assert set(ptr) == set(placeholders), "children and placeholders do not pair up"
    assert len(set(ptr)) == n, "two children share one placeholder"
    for r in runs:
        if "parent_task_run_id" in r:
            assert r["parent_task_run_id"] in placeholders
    for t in placeholders.values():
        assert t["task_key"] == "prefect.deployments.flow_runs.run_deployment.demo-flow-demo", t
    # The server mirrors each child's state onto its placeholder.

    def mirrored():
        cur = {t["id"]: t for t in prefect.task_runs_of(parent_id)}
        kids = prefect.flow_runs_by_id([r["flow_run_id"] for r in runs])
        bad = [(c["state_type"], cur[c["parent_task_run_id"]]["state_type"]) for c in kids
               if cur[c["parent_task_run_id"]]["state_type"] != c["state_type"]]
        return not bad or (print(f"[e2e] not mirrored yet: {bad[:3]}") and False)
    wait_until("placeholder states to mirror the children", mirrored, 60, 2)
    return placeholders, children


def test_b_as_subflow_with_api_parent(worker, floodgate):
    prefect = worker.api
    flow = prefect.flow_by_name("parent-flow")
    parent = prefect.post("/flow_runs/", {"flow_id": flow["id"], "name": f"e2e-parent-{uuid.uuid4().hex[:8]}",
                                          "state": {"type": "RUNNING", "name": "Running"}})
    parent_id = parent["id"]
    assert prefect.get(f"/flow_runs/{parent_id}")["state_type"] == "RUNNING"
    try:
        n = 5
        b = floodgate.client.submit({"deployment": "demo-flow/demo", "runs": demo_runs(n, 0.2),
                                     "parent_flow_run_id": parent_id,
                                     "limits": {"max_running": n}, "track": True})
        final = floodgate.client.wait_final(b["id"], 300, progress_printer("b api-parent"))
        assert final["state"] == "COMPLETED", final
        _, children = check_subflow_tree(prefect, floodgate, b["id"], parent_id, n)
        assert all(c["state_type"] == "COMPLETED" for c in children)
    finally:
        prefect.set_state(parent_id, "COMPLETED")


def test_b_as_subflow_with_real_parent_flow(worker, floodgate):
    """The parent is a real flow run on the worker that calls floodgate and long-polls it."""
    prefect = worker.api
    dep = prefect.deployment("parent-flow/parent")
    n = 3
    parent = prefect.post(f"/deployments/{dep['id']}/create_flow_run",
                          {"parameters": {"floodgate_url": floodgate.url, "n": n,
                                          "sleep_s": 0.2, "max_running": n}})
    parent_id = parent["id"]

    def parent_final():
        fr = prefect.get(f"/flow_runs/{parent_id}")
        return fr if fr["state_type"] in FINAL_PREFECT_STATES else None
    fr = wait_until("the parent flow run to finish", parent_final, 420, 2)
    assert fr["state_type"] == "COMPLETED", (fr["state_type"], fr["state"].get("message"))
    batches = http("GET", floodgate.url + "/v1/batches")[1]
    items = batches["batches"] if isinstance(batches, dict) else batches
    mine = [b for b in items if b.get("parent_flow_run_id") == parent_id]
    assert len(mine) == 1, items
    check_subflow_tree(prefect, floodgate, mine[0]["id"], parent_id, n)


# ---------------------------------------------------------------------------------------
# (c) cancel with on_cancel=cancel_children cancels running children in Prefect


def test_c_cancel_children(worker, floodgate):
    prefect = worker.api
    n = 4
    t_submit = time.monotonic()
    b = floodgate.client.submit({"deployment": "demo-flow/demo", "runs": demo_runs(n, 60),
                                 "limits": {"max_running": n}, "on_cancel": "cancel_children"})
    tag = tag_of(b["id"])

    def all_running():
        frs = prefect.flow_runs_by_tag(tag)
        return len(frs) == n and all(f["state_type"] == "RUNNING" for f in frs)
    wait_until(f"{n} children RUNNING in Prefect", all_running, 240, 1)
    t0 = time.monotonic()
    print(f"[e2e] c: all {n} children RUNNING {t0 - t_submit:.1f}s after the submit")
    ans = floodgate.client.cancel(b["id"])
    print(f"[e2e] c: cancel answered {ans.get('state') if isinstance(ans, dict) else ans}")

    def cancelling_or_cancelled():
        frs = prefect.flow_runs_by_tag(tag)
        return all(f["state_type"] in ("CANCELLING", "CANCELLED") for f in frs) and frs
    frs = wait_until("children CANCELLING/CANCELLED in Prefect", cancelling_or_cancelled, 30, 0.5)
    print(f"[e2e] c: all {n} children CANCELLING/CANCELLED {time.monotonic() - t0:.1f}s after "
          f"cancel: {collections.Counter(f['state_type'] for f in frs)}")
    final = floodgate.client.wait_final(b["id"], 30)
    assert final["state"] == "CANCELLED", final

    # Really cancelled: the child processes are stopped and reach CANCELLED well before the
    # 60 s they would sleep.
    def cancelled():
        frs = prefect.flow_runs_by_tag(tag)
        return all(f["state_type"] == "CANCELLED" for f in frs) and frs
    frs = wait_until("children CANCELLED (processes stopped)", cancelled, 45, 1)
    took = time.monotonic() - t0
    print(f"[e2e] c: all {n} children CANCELLED {took:.1f}s after cancel")
    for f in frs:
        assert f["end_time"] is not None

    # floodgate's own view follows Prefect (its tracking reads back off to 15 s when nothing
    # changes, so allow a few rounds).
    t1 = time.monotonic()

    def fg_items_cancelled():
        runs = floodgate.client.runs(b["id"])
        return all(r["state"] in ("CANCELLED", "SKIPPED") for r in runs) and runs
    try:
        runs = wait_until("floodgate items CANCELLED", fg_items_cancelled, 60, 1)
        print(f"[e2e] c: floodgate items {collections.Counter(r['state'] for r in runs)} "
              f"{time.monotonic() - t1:.1f}s after Prefect")
    except AssertionError:
        runs = floodgate.client.runs(b["id"])
        pytest.fail("children are CANCELLED in Prefect but 60 s later floodgate still lists "
                    f"{collections.Counter(r['state'] for r in runs)} "
                    f"({[(r['state'], r['flow_run_state']) for r in runs]})")


# ---------------------------------------------------------------------------------------
# (e) floodgated SIGKILLed mid-batch and restarted on the same db


def floodgate_db_items(db_path) -> dict:
    """Item states as floodgated last wrote them to its SQLite file (for the log only)."""
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT state, count(*) FROM items GROUP BY state").fetchall())
        finally:
            con.close()
    except sqlite3.Error as e:
        return {"error": str(e)}


def test_e_sigkill_and_restart_mid_batch(prefect_env, floodgate):
    prefect = prefect_env.api
    n = int(os.environ.get("FG_E2E_KILL_N", "60"))
    b = floodgate.client.submit({"deployment": "demo-flow/idle", "runs": demo_runs(n, 0),
                                 "limits": {"max_running": 20}})
    bid = b["id"]
    tag = tag_of(bid)
    with Completer(prefect, tag, hold_s=1.0) as completer:
        # Kill #1: the moment Prefect holds the first children, i.e. while floodgated has
        # creates in flight or has just had their answers (and may not have stored them).
        first = wait_until("the first children in Prefect", lambda: prefect.flow_runs_by_tag(tag),
                           60, 0.05)
        floodgate.kill()
        print(f"[e2e] e: SIGKILL #1 when Prefect had {len(first)} children; floodgated's db "
              f"then held {floodgate_db_items(floodgate.db_path)}; Prefect now has "
              f"{len(prefect.flow_runs_by_tag(tag))}")
        floodgate.start()

        # Kill #2: mid-batch, with children launched, finished and not yet launched.
        def mid():
            c = counts_while_running(floodgate, bid)
            return c["COMPLETED"] >= 5 and not_launched(c) > 0 and c
        c = wait_until("the batch to be half-way", mid, 180, 0.2)
        floodgate.kill()
        print(f"[e2e] e: SIGKILL #2 at {({k: v for k, v in c.items() if v})}; Prefect has "
              f"{len(prefect.flow_runs_by_tag(tag))} children")
        time.sleep(1)
        floodgate.start()
        final = floodgate.client.wait_final(bid, 300, progress_printer("e restarted"))
    print(f"[e2e] e: the completer finished {len(completer.completed)} children "
          f"({completer.errors} failed rounds)")
    assert_final_completed(floodgate, final, n)
    assert_exactly_once(prefect, floodgate, bid, n)


# ---------------------------------------------------------------------------------------
# (a) 200 children, each exactly once, all COMPLETED


def test_a_big_batch_exactly_once(worker, floodgate):
    prefect = worker.api
    n = BIG_N
    t0 = time.monotonic()
    b = floodgate.client.submit({"deployment": BIG_DEPLOYMENT, "runs": demo_runs(n, 0.2),
                                 "limits": {"max_running": 40}, "track": True})
    peak = {"running": 0}

    def watch(batch):
        c = batch["counts"]
        peak["running"] = max(peak["running"], c["LAUNCHED"] + c["LAUNCHING"])
        assert c["LAUNCHED"] + c["LAUNCHING"] <= 40, f"max_running exceeded: {c}"
    show = progress_printer("a big batch")
    final = floodgate.client.wait_final(b["id"], 900, lambda x: (watch(x), show(x)))
    took = time.monotonic() - t0
    print(f"[e2e] a: {n} children of {BIG_DEPLOYMENT} in {took:.0f}s, peak not-final "
          f"{peak['running']}; attempts {dict(collections.Counter(r['attempts'] for r in floodgate.client.runs(b['id'])))}")
    print(f"[e2e] a: floodgated metrics: {metrics_summary(floodgate)}")
    assert_final_completed(floodgate, final, n)
    _, flow_runs = assert_exactly_once(prefect, floodgate, b["id"], n)
    assert len({fr["idempotency_key"] for fr in flow_runs}) == n
    # Each child ran once: one process, one RUNNING state (Prefect's run_count).
    assert collections.Counter(fr["run_count"] for fr in flow_runs) == {1: n}, (
        collections.Counter(fr["run_count"] for fr in flow_runs))


# ---------------------------------------------------------------------------------------
# (f) the Prefect server stopped for 20 s mid-batch, then started again


def test_f_prefect_outage_mid_batch(prefect_env, floodgate):
    prefect = prefect_env.api
    n = int(os.environ.get("FG_E2E_OUTAGE_N", "40"))
    # No worker needed (the children are finished through the API); stopping it keeps it from
    # crash-looping through the outage. A later test that needs it starts it again.
    prefect_env.worker_stop()
    b = floodgate.client.submit({"deployment": "demo-flow/idle", "runs": demo_runs(n, 0),
                                 "limits": {"max_running": 10}})
    bid = b["id"]
    with Completer(prefect, tag_of(bid), hold_s=1.0) as completer:
        def mid():
            c = counts_while_running(floodgate, bid)
            return c["COMPLETED"] >= 5 and not_launched(c) > 0 and c
        c = wait_until("the batch to be under way", mid, 180, 0.2)
        print(f"[e2e] f: stopping the Prefect server at {({k: v for k, v in c.items() if v})}")
        t0 = time.monotonic()
        prefect_env.server_stop()
        assert not prefect.healthy()
        # While Prefect is down floodgate keeps answering and loses nothing.
        during = []
        while time.monotonic() - t0 < 20:
            try:
                during.append(floodgate.client.batch(bid)["counts"])
            except Exception as e:  # noqa: BLE001
                during.append({"error": str(e)})
            time.sleep(2)
        assert not [d for d in during if "error" in d], during
        assert all(sum(d.values()) == n for d in during), during
        print(f"[e2e] f: down {time.monotonic() - t0:.0f}s; floodgate during the outage: "
              f"{({k: v for k, v in during[-1].items() if v})}")
        prefect_env.server_start()
        print(f"[e2e] f: Prefect back after {time.monotonic() - t0:.0f}s")
        final = floodgate.client.wait_final(bid, 300, progress_printer("f after outage"))
    print(f"[e2e] f: final {final['state']} {({k: v for k, v in final['counts'].items() if v})}; "
          f"the completer finished {len(completer.completed)} children")
    assert_final_completed(floodgate, final, n)
    assert_exactly_once(prefect, floodgate, bid, n)
