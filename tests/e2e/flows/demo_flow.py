"""Flows that the floodgate end-to-end tests and the demo deploy to a local Prefect server.

Deployed from this folder with ``flow.from_source(source=<this dir>, entrypoint=...)``
by ``scripts/prefect-env.sh`` (see ``deploy.py`` beside this file):

- ``demo-flow/demo``     sleeps ``sleep_s`` seconds and returns ``x * 2``;
- ``flaky-flow/flaky``   same, but raises when ``fail`` is true (a FAILED child);
- ``parent-flow/parent`` a real parent flow that submits a batch of ``demo-flow/demo``
  children to floodgate with ``parent_flow_run_id`` = its own id (as_subflow) and waits
  for the batch with floodgate's long-poll. Standard library only on the floodgate side.
"""

from __future__ import annotations

import json
import time
import urllib.request

from prefect import flow, runtime


@flow(name="demo-flow", log_prints=False)
def demo_flow(x: int, sleep_s: float = 1.0) -> int:
    time.sleep(sleep_s)
    return x * 2


@flow(name="flaky-flow", log_prints=False)
def flaky_flow(x: int, fail: bool = False, sleep_s: float = 0.1) -> int:
    time.sleep(sleep_s)
    if fail:
        raise RuntimeError(f"flaky-flow asked to fail (x={x})")
    return x * 2


def _call(url: str, method: str = "GET", body: dict | None = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


@flow(name="parent-flow", log_prints=True)
def parent_flow(floodgate_url: str, n: int = 5, sleep_s: float = 0.5,
                max_running: int = 5, timeout_s: float = 600.0) -> dict:
    """Fan out ``n`` demo-flow children through floodgate, as a subflow tree."""
    parent_id = str(runtime.flow_run.id)
    batch = _call(f"{floodgate_url}/v1/batches", "POST", {
        "deployment": "demo-flow/demo",
        "runs": [{"parameters": {"x": i, "sleep_s": sleep_s}} for i in range(n)],
        "parent_flow_run_id": parent_id,
        "limits": {"max_running": max_running},
        "on_cancel": "cancel_children",
        "track": True,
    })
    print(f"floodgate batch {batch['id']} for parent {parent_id}")
    deadline = time.monotonic() + timeout_s
    version = batch.get("version", 0)
    while batch["state"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch['id']} did not end in {timeout_s}s: {batch}")
        batch = _call(f"{floodgate_url}/v1/batches/{batch['id']}?wait_s=20"
                      f"&after_version={version}", timeout=60)
        version = batch.get("version", version)
    print(f"batch {batch['id']} ended {batch['state']}: {batch['counts']}")
    if batch["state"] != "COMPLETED":
        raise RuntimeError(f"batch {batch['id']} ended {batch['state']}: {batch['counts']}")
    return {"batch_id": batch["id"], "state": batch["state"], "counts": batch["counts"]}
