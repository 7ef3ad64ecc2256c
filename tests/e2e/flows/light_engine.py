"""A light stand-in for ``python -m prefect.engine``: runs one flow run of ``demo_flow.py``
for a process worker without importing Prefect.

Why: the real engine costs about 3.5 s of CPU per flow run (most of it importing Prefect),
and with the worker's and the server's share about 5.5 s per child; 200 children are then
~9 minutes of a 2-core machine by themselves. The e2e test of 200 children checks what
floodgate does (launch through the limits, each child exactly once, follow every child to its
final state), not Prefect's engine, so its deployment (``demo-flow/light``) sets the worker's
``command`` job variable to this script. Everything around it is the real thing: a real
deployment and flow run, picked up by the real process worker (Pending, Submitting, a
subprocess per run, its exit code), and the states go through the server's orchestration
rules exactly as the engine proposes them (``set_state`` with ``force: false``).

What it does, as the engine does for a flow run started by a worker:
  1. read the flow run (``GET /flow_runs/{PREFECT__FLOW_RUN_ID}``) for its parameters;
  2. propose RUNNING (after a WAIT answer, again after its delay); anything but ACCEPT (e.g.
     the run was cancelled meanwhile) ends here;
  3. call the flow's function from ``demo_flow.py`` (imported with a tiny stand-in for the
     ``prefect`` module, so the real function body runs);
  4. propose COMPLETED (or FAILED with the exception) and exit 0 (1 if it could not report).

Standard library only. Honours PREFECT_API_URL, PREFECT_API_KEY, PREFECT_API_AUTH_STRING;
retries 503/429/502 and connection errors like Prefect's client (up to 10 times).
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
import types
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
RETRYABLE = {408, 429, 502, 503}


def _headers() -> dict:
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    key = os.environ.get("PREFECT_API_KEY")
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key:
        h["Authorization"] = f"Bearer {key}"
    return h


def call(method: str, path: str, body=None, tries: int = 10):
    url = os.environ["PREFECT_API_URL"].rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(tries):
        req = urllib.request.Request(url, data=data, method=method, headers=_headers())
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code not in RETRYABLE or attempt == tries - 1:
                raise
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if attempt == tries - 1:
                raise
        time.sleep(min(30.0, 2 ** attempt) * random.uniform(0.8, 1.2))
    raise AssertionError("unreachable")


def propose(run_id: str, state_type: str, name: str, message: str = "") -> dict:
    return call("POST", f"/flow_runs/{run_id}/set_state", {
        "state": {"type": state_type, "name": name, "message": message,
                  "state_details": {"transition_id": str(uuid.uuid4())}},
        "force": False,
    })


def load_flows() -> types.ModuleType:
    """demo_flow.py with a stand-in ``prefect`` module: @flow returns the function as is."""
    stub = types.ModuleType("prefect")

    def flow(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda fn: fn
    stub.flow = flow
    stub.runtime = types.SimpleNamespace(flow_run=types.SimpleNamespace(id=None))
    sys.modules.setdefault("prefect", stub)
    sys.path.insert(0, str(HERE))
    import demo_flow  # noqa: PLC0415
    return demo_flow


def main() -> int:
    run_id = os.environ["PREFECT__FLOW_RUN_ID"]
    run = call("GET", f"/flow_runs/{run_id}")
    ans = propose(run_id, "RUNNING", "Running")
    # WAIT (e.g. a run taken PENDING early by the worker's prefetch, then told "Scheduled time
    # is in the future"): wait as told and propose again, as Prefect's engine does.
    waits = 0
    while ans.get("status") == "WAIT" and waits < 20:
        waits += 1
        time.sleep(min(60.0, max(0.5, float((ans.get("details") or {}).get("delay_seconds")
                                            or 1))))
        ans = propose(run_id, "RUNNING", "Running")
    if ans.get("status") != "ACCEPT":
        print(f"light_engine: RUNNING not accepted for {run_id}: {ans.get('status')} "
              f"{(ans.get('details') or {}).get('reason')}", file=sys.stderr)
        return 0
    entry = os.environ.get("FG_LIGHT_ENGINE_FLOW", "demo_flow")
    fn = getattr(load_flows(), entry)
    try:
        result = fn(**(run.get("parameters") or {}))
    except Exception as e:  # noqa: BLE001 - the flow failed; report it as the engine would
        propose(run_id, "FAILED", "Failed", f"Flow run encountered an exception: {e!r}")
        return 0
    propose(run_id, "COMPLETED", "Completed", f"light_engine: returned {result!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
