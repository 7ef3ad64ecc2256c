"""Backlog gating on a real Prefect (issue 17, item 3): a deployment with `concurrency_limit` 2
and 30 children does not pile up AwaitingConcurrencySlot runs beyond the backlog limit.

The deployment (`demo-flow/limited2`) is `demo-flow/light` (the real process worker, each run
a process running `flows/light_engine.py`) with Prefect's deployment `concurrency_limit` 2.
The worker (limit 5) takes every SCHEDULED run it sees and proposes PENDING; the server grants
two slots and turns the others back into SCHEDULED "AwaitingConcurrencySlot" runs for 30 s
(`server.deployments.concurrency_slot_wait_seconds`). Without gating floodgate would create all
30 children at once and 28 of them would wait there.

A sampler reads the batch's runs in Prefect (tag `floodgate-batch:{id}`) every 0.5 s and counts
those not started yet (state type SCHEDULED or PENDING: Late and AwaitingConcurrencySlot are
SCHEDULED states). The peak must stay within the batch's `max_backlog` (floodgate counts a child
until one of its own reads shows it started, so its count is never below Prefect's), every
child is created once and the batch COMPLETES. Each case took 125-180 s at load 10-13 (three
sessions): a run the server turns away waits Prefect's default 30 s for its next try (the
worker's 10 s prefetch makes it 20 s), which is most of the time.
"""

from __future__ import annotations

import collections
import os
import threading
import time

import pytest

from helpers import http, wait_until

N = 30
LIMITED = "demo-flow/limited2"
WAITING = ("SCHEDULED", "PENDING")


def ensure_limited_deployment(prefect) -> dict:
    """`demo-flow/light` again under another name, with concurrency_limit 2 (POST /deployments
    upserts by flow and name, so this is idempotent)."""
    light = prefect.deployment("demo-flow/light")
    body = {k: light[k] for k in ("flow_id", "work_pool_name", "work_queue_name",
                                  "job_variables", "entrypoint", "path", "pull_steps",
                                  "parameter_openapi_schema", "enforce_parameter_schema")
            if light.get(k) is not None}
    body.update(name="limited2", concurrency_limit=2)
    prefect.post("/deployments/", body)
    dep = prefect.deployment(LIMITED)
    gcl = dep.get("global_concurrency_limit") or {}
    assert gcl.get("limit") == 2, dep
    # Slots an earlier, failed case left taken (runs that never finished) would hold this one.
    http("PATCH", f"{prefect.api}/v2/concurrency_limits/{gcl['id']}", {"active_slots": 0})
    return dep


class Sampler(threading.Thread):
    """Counts the batch's runs in Prefect by state every `interval` s."""

    def __init__(self, prefect, fg, batch_id: str, interval: float = 0.5):
        super().__init__(daemon=True)
        self.prefect, self.fg, self.batch_id, self.interval = prefect, fg, batch_id, interval
        self.stop_ev = threading.Event()
        self.peak_waiting = 0
        self.peak_running = 0
        self.peak_awaiting_slot = 0
        self.max_backlog_seen: set[int] = set()
        self.peak_fg_backlog = 0
        self.samples = 0
        self.errors = 0

    def run(self):
        tag = f"floodgate-batch:{self.batch_id}"
        while not self.stop_ev.is_set():
            try:
                runs = self.prefect.flow_runs_by_tag(tag)
                waiting = sum(r["state_type"] in WAITING for r in runs)
                self.peak_waiting = max(self.peak_waiting, waiting)
                self.peak_running = max(self.peak_running,
                                        sum(r["state_type"] == "RUNNING" for r in runs))
                self.peak_awaiting_slot = max(self.peak_awaiting_slot, sum(
                    r.get("state_name") == "AwaitingConcurrencySlot" for r in runs))
                prog = self.fg.client.batch(self.batch_id).get("progress") or {}
                if prog.get("max_backlog") is not None:
                    self.max_backlog_seen.add(prog["max_backlog"])
                self.peak_fg_backlog = max(self.peak_fg_backlog, prog.get("backlog") or 0)
                self.samples += 1
            except Exception:  # noqa: BLE001 - a 503 from a busy SQLite server: next sample
                self.errors += 1
            self.stop_ev.wait(self.interval)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.join(10)


def run_gated_batch(worker, floodgate, limits: dict) -> tuple[dict, Sampler, float]:
    prefect = worker.api
    ensure_limited_deployment(prefect)
    t0 = time.monotonic()
    b = floodgate.client.submit({
        "deployment": LIMITED,
        "runs": [{"parameters": {"x": i, "sleep_s": 0.3}} for i in range(N)],
        "limits": limits, "track": True, "tolerated_failure_percentage": 0})
    try:
        with Sampler(prefect, floodgate, b["id"]) as s:
            final = floodgate.client.wait_final(b["id"], 300)
    except BaseException:
        for r in prefect.flow_runs_by_tag(f"floodgate-batch:{b['id']}"):
            if r["state_type"] in ("SCHEDULED", "PENDING", "RUNNING"):
                prefect.set_state(r["id"], "CANCELLED", force=True)
        raise
    took = time.monotonic() - t0
    # Exactly once: one flow run per child, each with its own key, each run once.
    runs = wait_until("all runs final in Prefect", lambda: (lambda rs: all(
        r["state_type"] == "COMPLETED" for r in rs) and rs)(
            prefect.flow_runs_by_tag(f"floodgate-batch:{b['id']}")), 60)
    keys = collections.Counter(r["idempotency_key"] for r in runs)
    assert sorted(keys) == sorted(f"floodgate:{b['id']}:{i}" for i in range(N)), keys
    assert collections.Counter(r["run_count"] for r in runs) == {1: N}
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["COMPLETED"] == N, final
    print(f"\n[e2e] backlog {limits or 'default'}: {N} children of {LIMITED} "
          f"(concurrency_limit 2) COMPLETED in {took:.1f}s; peak waiting to start in Prefect "
          f"{s.peak_waiting} (AwaitingConcurrencySlot {s.peak_awaiting_slot}), peak RUNNING "
          f"{s.peak_running}, floodgate's peak backlog {s.peak_fg_backlog}, max_backlog seen "
          f"{sorted(s.max_backlog_seen)}; {s.samples} samples ({s.errors} failed)", flush=True)
    assert s.samples >= 10, s.samples
    # Prefect's concurrency limit held: the runs waiting are what the gate is about.
    assert s.peak_running <= 2, s.peak_running
    return final, s, took


def test_backlog_limit_holds_with_a_deployment_concurrency_limit(worker, floodgate):
    final, s, _ = run_gated_batch(worker, floodgate, {"max_backlog": 6})
    assert final["limits"]["max_backlog"] == 6, final["limits"]
    assert s.max_backlog_seen == {6}, s.max_backlog_seen
    assert s.peak_waiting <= 6, s.peak_waiting
    assert s.peak_fg_backlog <= 6, s.peak_fg_backlog
    # The case is the one the issue names: runs did wait for a slot (the worker proposes
    # PENDING to up to 5 at once; two get the slots).
    assert s.peak_awaiting_slot >= 1, s.peak_awaiting_slot


# Opt-in: with the fixed-limit case the two would add 5-6 minutes to the CI's e2e lane (the
# lane may grow by a minute or two); the fixed limit is the case.
@pytest.mark.skipif(os.environ.get("FG_E2E_BACKLOG_DERIVED") != "1",
                    reason="the derived-limit case runs with FG_E2E_BACKLOG_DERIVED=1")
def test_derived_backlog_limit_keeps_the_pile_small(worker, floodgate):
    final, s, _ = run_gated_batch(worker, floodgate, {})
    assert "max_backlog" not in final["limits"] or final["limits"]["max_backlog"] is None, (
        final["limits"])
    # The derived limit is at least 10 and grows with the workers' start rate (here about
    # 2 runs/s at most): the pile stays within it, well below the 28 an ungated batch leaves.
    assert s.max_backlog_seen and min(s.max_backlog_seen) >= 10, s.max_backlog_seen
    assert s.peak_waiting <= max(s.max_backlog_seen), (s.peak_waiting, s.max_backlog_seen)
    assert s.peak_waiting < N // 2, s.peak_waiting
