"""Start deadlines on a real Prefect (issue 17): children of a deployment whose pool no worker
polls (`demo-flow/idle` on `floodgate-e2e-idle`) stay SCHEDULED, hit the batch's
`start_deadline_s` and are handled as its `on_deadline` says:

- `report`: the items become STUCK (counted against the tolerance: the batch FAILED once it is
  passed), the runs are left alone in Prefect, and a stuck child that is started and finished
  later (here by the test, through Prefect's API) still takes its final state in floodgate;
- `fail`: the stuck runs are cancelled in Prefect (Prefect's orchestration turns a proposed
  CANCELLING of a SCHEDULED run with no infrastructure into CANCELLED) and the items FAILED with
  a reason naming the start deadline; a child the test starts in time is not touched;
- `relaunch`: each stuck run is cancelled and a new one created with the `:r1` key; a
  relaunched run that is started in time COMPLETES its item, one that is stuck again is
  cancelled too and its item FAILED with "no relaunch left" (the budget is one relaunch).

And the same policy for the other two ways a child is lost: a run deleted in Prefect
(`relaunch`: a `:r1` run replaces it) and a run past its `run_deadline_s` (`fail`: floodgate
asks Prefect to cancel the RUNNING run, which goes CANCELLING; the test, playing the worker,
ends it CANCELLED).

The children that do start are played by a `Completer` (helpers.py) restricted to them. Each case
takes about 10-30 s; no worker is needed.
"""

from __future__ import annotations

import collections
import os
import time
import urllib.request

from helpers import Completer, http, wait_until

DEPLOYMENT = "demo-flow/idle"
# Long enough for the Completer (0.5 s rounds) to start the children meant to start, on a
# loaded machine; short enough to keep each case well under a minute.
START_DEADLINE_S = int(os.environ.get("FG_E2E_START_DEADLINE_S", "5"))


def tag_of(batch_id: str) -> str:
    return f"floodgate-batch:{batch_id}"


def key_of(batch_id: str, index: int, relaunch: int = 0) -> str:
    return f"floodgate:{batch_id}:{index}" + (f":r{relaunch}" if relaunch else "")


def children(n: int) -> list[dict]:
    return [{"parameters": {"x": i, "sleep_s": 0}} for i in range(n)]


def deadline_metric(fg, reason: str, action: str) -> float:
    text = urllib.request.urlopen(fg.url + "/metrics", timeout=10).read().decode()
    want = f'floodgate_child_deadlines_total{{action="{action}",reason="{reason}"}}'
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def runs_by_key(prefect, batch_id: str) -> dict[str, dict]:
    runs = prefect.flow_runs_by_tag(tag_of(batch_id))
    by_key = {r["idempotency_key"]: r for r in runs}
    assert len(by_key) == len(runs), f"two runs with one key: {[r['idempotency_key'] for r in runs]}"
    return by_key


def states_of(runs: dict[str, dict]) -> dict[str, str]:
    return {k: r["state_type"] for k, r in sorted(runs.items())}


def cancel_leftovers(prefect, batch_id: str):
    """Ends the runs a case left SCHEDULED, so no later test (or worker) meets them."""
    for r in prefect.flow_runs_by_tag(tag_of(batch_id)):
        if r["state_type"] in ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING"):
            prefect.set_state(r["id"], "CANCELLED", force=True)


def submit(fg, n: int, on_deadline: str, **extra) -> tuple[dict, float]:
    body = {"deployment": DEPLOYMENT, "runs": children(n), "start_deadline_s": START_DEADLINE_S,
            "on_deadline": on_deadline, **extra}
    b = fg.client.submit(body)
    assert b["start_deadline_s"] == body["start_deadline_s"], b
    assert b["on_deadline"] == on_deadline, b
    return b, time.monotonic()


def show(label: str, t0: float, final: dict, items: list[dict]):
    counts = {k: v for k, v in final["counts"].items() if v}
    print(f"\n[e2e] deadlines {label}: batch {final['state']} {counts} failures "
          f"{final['failures']} in {time.monotonic() - t0:.1f}s; items "
          f"{[(i['index'], i['state']) for i in items]}", flush=True)


def test_start_deadline_report_marks_stuck_and_leaves_the_runs(prefect_env, floodgate):
    prefect = prefect_env.api
    n = 3
    b, t0 = submit(floodgate, n, "report", tolerated_failure_count=1)
    bid = b["id"]
    try:
        final = floodgate.client.wait_final(bid, 120)
        took = time.monotonic() - t0
        # Every child stuck (those still followed after the batch ended reach it too).
        items = wait_until("every item STUCK",
                           lambda: (lambda r: all(i["state"] == "STUCK" for i in r) and r)(
                               floodgate.client.runs(bid)), 60)
        show("report", t0, final, items)
        print(f"[e2e] deadlines report: batch final {took:.1f}s after submit")
        # Two stuck children are beyond a tolerance of one: the batch FAILED.
        assert final["state"] == "FAILED", final
        assert final["failures"] >= 2, final
        for it in items:
            assert f"start deadline ({START_DEADLINE_S} s) passed" in it["last_error"], it
            assert not it.get("earlier_runs"), it
        # Left alone in Prefect: one run each, still SCHEDULED, no relaunch, nothing cancelled.
        runs = runs_by_key(prefect, bid)
        assert sorted(runs) == sorted(key_of(bid, i) for i in range(n)), sorted(runs)
        assert set(states_of(runs).values()) == {"SCHEDULED"}, states_of(runs)
        assert {i["flow_run_id"] for i in items} == {r["id"] for r in runs.values()}
        assert deadline_metric(floodgate, "start_deadline", "report") == n
        assert deadline_metric(floodgate, "start_deadline", "fail") == 0

        # The parent's decision: a stuck child started and finished later (here through
        # Prefect's API, as a worker would) is still followed and takes its final state.
        late = runs[key_of(bid, 0)]["id"]
        for state in ("PENDING", "RUNNING", "COMPLETED"):
            prefect.set_state(late, state, force=False)
        t1 = time.monotonic()
        # The batch has ended: its reads of the children it still follows are spread out (23 s
        # seen at load 9).
        wait_until("the late child COMPLETED in floodgate",
                   lambda: floodgate.client.runs(bid)[0]["state"] == "COMPLETED", 90)
        after = floodgate.client.batch(bid)
        print(f"[e2e] deadlines report: the late child COMPLETED in floodgate "
              f"{time.monotonic() - t1:.1f}s after Prefect; batch {after['state']} "
              f"{ {k: v for k, v in after['counts'].items() if v} }")
        assert after["state"] == "FAILED" and after["counts"]["STUCK"] == n - 1, after
    finally:
        cancel_leftovers(prefect, bid)


def test_start_deadline_fail_cancels_the_stuck_runs(prefect_env, floodgate):
    prefect = prefect_env.api
    n = 4
    b, t0 = submit(floodgate, n, "fail", tolerated_failure_percentage=100)
    bid = b["id"]
    # Child 0 starts (the test plays its worker); 1-3 never do.
    try:
        with Completer(prefect, tag_of(bid), hold_s=0.5,
                       only=lambda fr: fr["parameters"].get("x") == 0) as completer:
            final = floodgate.client.wait_final(bid, 120)
        took = time.monotonic() - t0
        items = floodgate.client.runs(bid)
        show("fail", t0, final, items)
        assert len(completer.completed) == 1, completer.completed
        # Three failures, all tolerated: the batch COMPLETED with them counted.
        assert final["state"] == "COMPLETED", final
        assert final["counts"]["COMPLETED"] == 1 and final["counts"]["FAILED"] == n - 1, final
        assert final["failures"] == n - 1, final
        assert items[0]["state"] == "COMPLETED", items[0]
        for it in items[1:]:
            assert it["state"] == "FAILED", it
            assert f"start deadline ({START_DEADLINE_S} s) passed" in it["last_error"], it
            assert "after it was created" in it["last_error"], it

        # In Prefect: one run per child (no relaunch); the stuck ones CANCELLED by floodgate.
        def cancelled():
            runs = runs_by_key(prefect, bid)
            return all(runs[key_of(bid, i)]["state_type"] == "CANCELLED"
                       for i in range(1, n)) and runs
        runs = wait_until("the stuck runs CANCELLED in Prefect", cancelled, 60)
        print(f"[e2e] deadlines fail: batch final {took:.1f}s after submit, stuck runs "
              f"CANCELLED {time.monotonic() - t0:.1f}s after submit; Prefect: "
              f"{collections.Counter(states_of(runs).values())}")
        assert sorted(runs) == sorted(key_of(bid, i) for i in range(n)), sorted(runs)
        assert runs[key_of(bid, 0)]["state_type"] == "COMPLETED", runs[key_of(bid, 0)]
        assert runs[key_of(bid, 0)]["run_count"] == 1
        for i in range(1, n):
            r = runs[key_of(bid, i)]
            assert r["id"] == items[i]["flow_run_id"]
            assert r["run_count"] == 0, r  # cancelled before anything ran it
        assert deadline_metric(floodgate, "start_deadline", "fail") == n - 1
    finally:
        cancel_leftovers(prefect, bid)


def test_start_deadline_relaunch_then_no_relaunch_left(prefect_env, floodgate):
    prefect = prefect_env.api
    n = 3
    b, t0 = submit(floodgate, n, "relaunch", tolerated_failure_percentage=100)
    bid = b["id"]
    assert b["relaunch_crashed"] == 0, b  # the budget with `relaunch` is then one relaunch
    # Only child 0's relaunched run starts (the test plays its worker): the relaunch saves it.
    # Children 1 and 2 are stuck twice.
    restarted = key_of(bid, 0, 1)
    try:
        with Completer(prefect, tag_of(bid), hold_s=0.5,
                       only=lambda fr: fr["idempotency_key"] == restarted) as completer:
            final = floodgate.client.wait_final(bid, 150)
        took = time.monotonic() - t0
        items = floodgate.client.runs(bid)
        show("relaunch", t0, final, items)
        assert len(completer.completed) == 1, completer.completed
        assert final["state"] == "COMPLETED", final
        assert final["counts"]["COMPLETED"] == 1 and final["counts"]["FAILED"] == n - 1, final

        def cancelled():
            runs = runs_by_key(prefect, bid)
            done = [k for k, r in runs.items() if r["state_type"] == "CANCELLED"]
            return len(done) == 2 * n - 1 and runs
        runs = wait_until("the stuck runs CANCELLED in Prefect", cancelled, 60)
        print(f"[e2e] deadlines relaunch: batch final {took:.1f}s after submit, stuck runs "
              f"CANCELLED {time.monotonic() - t0:.1f}s after submit; Prefect: "
              f"{ {k.removeprefix(f'floodgate:{bid}:'): v for k, v in states_of(runs).items()} }")
        # Two runs per child, keyed `:i` then `:i:r1`; nothing beyond the budget.
        assert sorted(runs) == sorted(key_of(bid, i, r) for i in range(n) for r in (0, 1)), (
            sorted(runs))
        assert runs[restarted]["state_type"] == "COMPLETED", runs[restarted]
        for i in range(n):
            it = items[i]
            first, second = runs[key_of(bid, i)], runs[key_of(bid, i, 1)]
            assert first["state_type"] == "CANCELLED", first
            assert it["earlier_runs"] == [{"flow_run_id": first["id"],
                                           "state": "START_DEADLINE"}], it
            assert it["flow_run_id"] == second["id"], (it, second)
            if i == 0:
                assert it["state"] == "COMPLETED", it
            else:
                assert second["state_type"] == "CANCELLED", second
                assert it["state"] == "FAILED", it
                assert "no relaunch left" in it["last_error"], it
                assert f"start deadline ({START_DEADLINE_S} s) passed" in it["last_error"], it
        assert deadline_metric(floodgate, "start_deadline", "relaunch") == n
        assert deadline_metric(floodgate, "start_deadline", "fail") == n - 1
    finally:
        cancel_leftovers(prefect, bid)


def test_deleted_child_is_relaunched(prefect_env, floodgate):
    prefect = prefect_env.api
    n = 2
    # No start deadline: only the deletion makes floodgate give up on child 0's first run.
    b, t0 = submit(floodgate, n, "relaunch", start_deadline_s=0)
    bid = b["id"]
    first_key = key_of(bid, 0)
    try:
        with Completer(prefect, tag_of(bid), hold_s=0.5,
                       only=lambda fr: fr["idempotency_key"] != first_key) as completer:
            first = wait_until("child 0 followed by floodgate", lambda: (
                lambda it: it["state"] == "LAUNCHED" and it["flow_run_id"])(
                    floodgate.client.runs(bid)[0]), 60, 0.2)
            status, _ = http("DELETE", f"{prefect.api}/flow_runs/{first}")
            assert status in (200, 204), status
            t1 = time.monotonic()
            final = floodgate.client.wait_final(bid, 120)
        items = floodgate.client.runs(bid)
        show("deleted", t0, final, items)
        print(f"[e2e] deadlines deleted: batch final {time.monotonic() - t1:.1f}s after the "
              "deletion")
        assert final["state"] == "COMPLETED" and final["counts"]["COMPLETED"] == n, final
        assert len(completer.completed) == n, completer.completed
        assert items[0]["earlier_runs"] == [{"flow_run_id": first, "state": "DELETED"}], items[0]
        runs = runs_by_key(prefect, bid)
        assert sorted(runs) == sorted([key_of(bid, 0, 1), key_of(bid, 1)]), sorted(runs)
        assert items[0]["flow_run_id"] == runs[key_of(bid, 0, 1)]["id"], (items[0], runs)
        assert set(states_of(runs).values()) == {"COMPLETED"}, states_of(runs)
        assert deadline_metric(floodgate, "deleted", "relaunch") == 1
    finally:
        cancel_leftovers(prefect, bid)


def test_run_deadline_fail_cancels_the_running_child(prefect_env, floodgate):
    prefect = prefect_env.api
    n = 2
    run_deadline_s = 3
    b, t0 = submit(floodgate, n, "fail", start_deadline_s=0, run_deadline_s=run_deadline_s,
                   tolerated_failure_count=1)
    bid = b["id"]
    assert b["run_deadline_s"] == run_deadline_s, b
    slow_key = key_of(bid, 0)
    try:
        # Child 0 runs for good (held RUNNING far past the deadline), child 1 finishes at once.
        with Completer(prefect, tag_of(bid), hold_s=0.5,
                       only=lambda fr: fr["idempotency_key"] != slow_key) as quick, \
                Completer(prefect, tag_of(bid), hold_s=3600,
                          only=lambda fr: fr["idempotency_key"] == slow_key) as slow:
            final = floodgate.client.wait_final(bid, 120)
        took = time.monotonic() - t0
        items = floodgate.client.runs(bid)
        show("run deadline", t0, final, items)
        assert len(quick.completed) == 1 and len(slow.started) == 1, (quick.completed, slow.started)
        assert final["state"] == "COMPLETED", final
        assert final["counts"]["COMPLETED"] == 1 and final["counts"]["FAILED"] == 1, final
        assert items[0]["state"] == "FAILED", items[0]
        assert f"run deadline ({run_deadline_s} s) passed" in items[0]["last_error"], items[0]
        assert "after it started" in items[0]["last_error"], items[0]

        # Prefect: a RUNNING run that floodgate cancels goes CANCELLING; with no worker to stop
        # its process, the test plays the worker and ends it.
        slow_id = items[0]["flow_run_id"]
        wait_until("the slow run CANCELLING in Prefect", lambda: prefect.get(
            f"/flow_runs/{slow_id}")["state_type"] in ("CANCELLING", "CANCELLED"), 60)
        print(f"[e2e] deadlines run deadline: batch final {took:.1f}s after submit, the slow "
              f"run CANCELLING {time.monotonic() - t0:.1f}s after submit")
        prefect.set_state(slow_id, "CANCELLED", force=False)
        assert prefect.get(f"/flow_runs/{slow_id}")["state_type"] == "CANCELLED"
        assert deadline_metric(floodgate, "run_deadline", "fail") == 1
    finally:
        cancel_leftovers(prefect, bid)
