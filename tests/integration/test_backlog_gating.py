"""Backlog gating (issue 17, item 3) against the fake Prefect, whose workers start at most 20
runs a second (start_rate): a batch holds its launches while its children waiting to start reach
max_backlog, so the runs Prefect holds unstarted never exceed the limit (counted on the fake's
side), and with the derived limit the batch finishes about as fast as launching unthrottled."""

import os
import threading
import time

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once, parse_metrics, wait_until

START_RATE = 20
WORKERS = {"scheduled_ms": 0, "pending_ms": 0, "running_ms": 500, "start_rate": START_RATE}
# The figure is 2,000 children; CI runs 1,000 (50 s of starts per batch, twice).
CHILDREN = int(os.environ.get("FG_GATING_CHILDREN", "1000"))


class WaitingSampler:
    """Counts, on the fake, the runs of a batch not yet started (SCHEDULED or PENDING)."""

    def __init__(self, fake, batch_id):
        self.fake, self.batch_id = fake, batch_id
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            runs = self.fake.runs_of(self.batch_id)
            waiting = sum(1 for r in runs if r["state_type"] in ("SCHEDULED", "PENDING"))
            self.peak = max(self.peak, waiting)
            self.samples += 1
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join()


def _submit(api, n, max_backlog="derived"):
    body = {"deployment": DEMO_DEPLOYMENT, "runs": [{"parameters": {"i": i}} for i in range(n)]}
    if max_backlog != "derived":
        body["limits"] = {"max_backlog": max_backlog}
    return api.submit(body)


def _makespan(api, fake, max_backlog):
    """Submits CHILDREN runs; (seconds to COMPLETED, peak unstarted runs on the fake, view)."""
    t0 = time.monotonic()
    b = _submit(api, CHILDREN, max_backlog)
    sampler = WaitingSampler(fake, b["id"])
    final = api.wait_state(b["id"], timeout=400)
    took = time.monotonic() - t0
    sampler.stop()
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs_of(b["id"]), b["id"], CHILDREN)
    return took, sampler.peak, final


@pytest.mark.time_limit(120)
def test_a_fixed_limit_bounds_the_runs_waiting_to_start(api, fake):
    fake.config(run_schedule=WORKERS)
    total, limit = 300, 40
    b = _submit(api, total, limit)
    sampler = WaitingSampler(fake, b["id"])
    seen_held = []

    def held():
        p = api.batch(b["id"])["progress"]
        if p and "backlog" in p["waiting_on"]:
            seen_held.append(p)
        return bool(seen_held)

    wait_until(held, 30, 0.1, what="the batch to say it waits on its backlog")
    assert seen_held[0]["max_backlog"] == limit and seen_held[0]["backlog"] <= limit
    series = f'floodgate_batch_waiting{{batch_id="{b["id"]}",reason="backlog"}}'
    wait_until(lambda: parse_metrics(api.metrics()).get(series) == 1, 20, 0.2,
               what="/metrics to say the batch waits on its backlog")
    assert parse_metrics(api.metrics())['floodgate_batches_waiting{reason="backlog"}'] >= 1
    final = api.wait_state(b["id"], timeout=100)
    sampler.stop()
    print(f"max_backlog {limit}: peak {sampler.peak} runs waiting to start on the fake over "
          f"{sampler.samples} samples")
    assert final["state"] == "COMPLETED", final
    assert final["progress"] is None
    assert_exactly_once(fake.runs_of(b["id"]), b["id"], total)
    assert sampler.samples >= 10
    assert 0 < sampler.peak <= limit, sampler.peak


@pytest.mark.time_limit(420)
def test_the_derived_limit_follows_the_workers_and_keeps_the_makespan(api, fake):
    fake.config(run_schedule=WORKERS)
    free, free_peak, _ = _makespan(api, fake, 0)
    gated, gated_peak, _ = _makespan(api, fake, "derived")
    print(f"{CHILDREN} children, workers start {START_RATE}/s: unthrottled {free:.1f} s with "
          f"{free_peak} runs waiting at most; gated {gated:.1f} s ({gated / free:.3f}x) with "
          f"{gated_peak} at most")
    # Without gating nearly every child waits unstarted at once; with it, about 30 s of starts
    # (plus two read intervals).
    assert free_peak > CHILDREN * 0.8, free_peak
    assert gated_peak <= START_RATE * 40, gated_peak
    assert gated <= free * 1.10, (gated, free)
