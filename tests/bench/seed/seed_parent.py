"""The seed's parent flow, two ways (run by tests/bench/seed_scenario.py in the Prefect venv).

    python seed_parent.py gather    --deployment demo-flow/demo --n 100 --tag T [--sleep-s 1]
    python seed_parent.py floodgate --deployment demo-flow/demo --n 100 --tag T [--sleep-s 1]

- ``gather``: what the seed does, ``await asyncio.gather(*(run_deployment(name,
  parameters=p, tags=[tag]) for p in params))`` inside an async flow: as_subflow (a placeholder
  task run per child), no idempotency key, and each call polls ``GET /flow_runs/{id}`` every
  5 s until its child is final.
- ``floodgate``: the drop-in, ``await floodgate.arun_deployments(name, params, tags=[tag])``
  (client/python on PYTHONPATH, FLOODGATE_URL set): one batch, linked under this flow run,
  one long-poll.

The parent is run as a local process (``flow()`` called directly), so its own flow run is
created through PREFECT_API_URL like the children's creates; the bench points
PREFECT_API_URL at its counting proxy. Prints one JSON line with the result on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

from prefect import flow, runtime
from prefect.deployments import run_deployment


def _params(n: int, sleep_s: float) -> list[dict]:
    return [{"x": i, "sleep_s": sleep_s} for i in range(n)]


@flow(name="seed-parent-gather", log_prints=False)
async def parent_gather(deployment: str, n: int, tag: str, sleep_s: float = 1.0) -> dict:
    runs = await asyncio.gather(*(run_deployment(deployment, parameters=p, tags=[tag])
                                  for p in _params(n, sleep_s)))
    states = collections.Counter(r.state.type.value if r.state else "NONE" for r in runs)
    return {"parent_flow_run_id": str(runtime.flow_run.id), "child_states": dict(states)}


@flow(name="seed-parent-floodgate", log_prints=False)
async def parent_floodgate(deployment: str, n: int, tag: str, sleep_s: float = 1.0,
                           limits: str = "") -> dict:
    import floodgate  # client/python, standard library only

    runs = await floodgate.arun_deployments(deployment, _params(n, sleep_s), tags=[tag],
                                            tolerated_failure_percentage=100,
                                            limits=json.loads(limits) if limits else None)
    states = collections.Counter(r.state for r in runs)
    return {"parent_flow_run_id": str(runtime.flow_run.id), "child_states": dict(states)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["gather", "floodgate"])
    ap.add_argument("--deployment", default="demo-flow/demo")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--sleep-s", type=float, default=1.0)
    ap.add_argument("--limits", default="", help="the batch's limits (JSON), floodgate mode only")
    a = ap.parse_args()
    fn = parent_gather if a.mode == "gather" else parent_floodgate
    t0 = time.time()
    error = None
    try:
        extra = (a.limits,) if a.mode == "floodgate" else ()
        result = asyncio.run(fn(a.deployment, a.n, a.tag, a.sleep_s, *extra))
    except BaseException as e:  # noqa: BLE001 - report it, the bench decides
        result, error = {}, f"{type(e).__name__}: {e}"
    result.update(mode=a.mode, started=t0, ended=time.time(), error=error)
    print("SEED_RESULT " + json.dumps(result), flush=True)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
