"""(g) A busy Prefect must never cost a child (issue 10).

Runs after test_e2e.py (file order). The session's server is lean; this case restarts it with
Prefect's default services on (event persister, triggers, task-run recorder, foreman, late
runs, ... all writing to the same SQLite database) and flow runs shipping their logs to the
API, starts the worker on it with a few dozen real children to run, and a CPU hog beside them
on this 2-core machine. floodgate then launches 100 more children; every one must be created
exactly once and the batch must end COMPLETED. The lean server and worker are restored after.

NOT PASSING YET, so opt-in (FG_E2E_BUSY=1): in its first runs the test's own set-up (the worker's
children, created directly with Prefect's API) got 503 "Service Unavailable" on every create for
minutes, even with 40 retries; floodgate's part was never reached. Until that is understood the
case stays out of the test command; issue 10 is open for it.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time

import pytest
from helpers import FINAL_PREFECT_STATES, Completer, wait_until
from test_e2e import (assert_exactly_once, assert_final_completed, demo_runs, metrics_summary,
                      progress_printer, tag_of)

BUSY_N = int(os.environ.get("FG_E2E_BUSY_N", "100"))
WORKER_N = int(os.environ.get("FG_E2E_BUSY_WORKER_N", "30"))

pytestmark = pytest.mark.skipif(os.environ.get("FG_E2E_BUSY") != "1",
                                reason="opt-in (FG_E2E_BUSY=1): does not pass yet, see the docstring")


def test_g_busy_prefect_with_services_worker_and_cpu_hog(prefect_env, floodgate):
    prefect = prefect_env.api
    lean_env = prefect_env.env
    busy_env = dict(lean_env, FG_PREFECT_LEAN="false")
    hog = None
    try:
        prefect_env.worker_stop()
        prefect_env.server_stop()
        prefect_env.env = busy_env
        prefect_env.server_start()
        wait_until("Prefect health", prefect.healthy, 120)
        prefect_env.ensure_worker(120)
        hog = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)

        # The worker's own load: a few dozen real children of demo-flow/light.
        light = prefect.deployment("demo-flow/light")
        worker_tag = f"e2e-busy-worker-{int(time.time())}"
        for i in range(WORKER_N):
            prefect.post(f"/deployments/{light['id']}/create_flow_run",
                         {"parameters": {"x": i, "sleep_s": 1.0}, "tags": [worker_tag]},
                         timeout=90)

        t0 = time.monotonic()
        b = floodgate.client.submit({"deployment": "demo-flow/idle",
                                     "runs": demo_runs(BUSY_N, 0),
                                     "limits": {"max_running": 50}})
        bid = b["id"]
        with Completer(prefect, tag_of(bid), hold_s=0.5) as completer:
            final = floodgate.client.wait_final(bid, 600, progress_printer("g busy"))
        took = time.monotonic() - t0
        runs = floodgate.client.runs(bid)
        print(f"[e2e] g: {BUSY_N} children on a non-lean Prefect with {WORKER_N} worker "
              f"children and a CPU hog: {final['state']} in {took:.0f}s; attempts "
              f"{dict(collections.Counter(r['attempts'] for r in runs))}, transient "
              f"{sum(r.get('transient_attempts', 0) for r in runs)}; the completer finished "
              f"{len(completer.completed)} ({completer.errors} failed rounds)")
        print(f"[e2e] g: floodgated metrics: {metrics_summary(floodgate)}")
        assert_final_completed(floodgate, final, BUSY_N)
        assert_exactly_once(prefect, floodgate, bid, BUSY_N)
        assert not [r for r in runs if r["state"] in ("LAUNCH_FAILED", "SKIPPED")]
        # The worker really ran its children beside floodgate's.
        ran = [fr for fr in prefect.flow_runs_by_tag(worker_tag)
               if fr["state_type"] in FINAL_PREFECT_STATES or fr["state_type"] == "RUNNING"]
        print(f"[e2e] g: the worker's children started or ended: {len(ran)} of {WORKER_N}")
        assert ran, "the worker ran none of its children"
    finally:
        if hog is not None:
            os.killpg(hog.pid, signal.SIGKILL)
            hog.wait(10)
        # Back to the session's lean server and worker for whatever runs next.
        prefect_env.worker_stop()
        prefect_env.server_stop()
        prefect_env.env = lean_env
        prefect_env.server_start()
        wait_until("Prefect health", prefect.healthy, 120)
