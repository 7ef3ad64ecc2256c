"""Register the demo deployments (see demo_flow.py) with the Prefect server at PREFECT_API_URL.

Usage: python deploy.py WORK_POOL_NAME [IDLE_POOL_NAME]

Idempotent: deploying again updates the deployments in place. Each deployment enforces its
parameter schema, so a create with bad parameters is answered 409 by Prefect.

The deployments set the process worker's ``command`` job variable to
``<this python> -m prefect.engine``. Without it a Prefect 3.9 process worker starts each flow
run through a workspace supervisor, a second Python process that imports Prefect too: about
twice the CPU per child, which on a 2-core machine is most of what a batch of trivial children
costs.

``demo-flow/light`` is the same flow on the same pool, but its ``command`` runs
``light_engine.py`` (a stdlib stand-in for the engine, see there) instead of Prefect's engine:
for tests that need many children to finish and do not care what runs inside them.

With IDLE_POOL_NAME, that process pool is created if missing (no worker ever polls it) and
``demo-flow/idle`` is deployed on it: its runs stay SCHEDULED until someone sets their state
through the API, which is what the e2e tests about floodgate crashes and Prefect outages use
to finish children without paying for a flow-run process each.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from prefect import flow

HERE = Path(__file__).resolve().parent

DEPLOYMENTS = [
    ("demo_flow.py:demo_flow", "demo"),
    ("demo_flow.py:flaky_flow", "flaky"),
    ("demo_flow.py:parent_flow", "parent"),
]


def ensure_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(
            name=name, type="process",
            base_job_template=ProcessWorker.get_default_base_job_template()))
        print(f"work pool {name} (process, no worker) created")


def main() -> int:
    pool = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PREFECT_POOL", "floodgate-demo")
    idle_pool = sys.argv[2] if len(sys.argv) > 2 else ""
    job_variables = {"command": f"{sys.executable} -m prefect.engine"}
    light = {"command": f"{sys.executable} -I -S {HERE / 'light_engine.py'}"}
    targets = [(entry, name, pool, job_variables) for entry, name in DEPLOYMENTS]
    targets.append(("demo_flow.py:demo_flow", "light", pool, light))
    if idle_pool:
        ensure_pool(idle_pool)
        targets.append(("demo_flow.py:demo_flow", "idle", idle_pool, job_variables))
    for entrypoint, name, target_pool, variables in targets:
        f = flow.from_source(source=str(HERE), entrypoint=entrypoint)
        dep_id = f.deploy(
            name=name,
            work_pool_name=target_pool,
            job_variables=variables,
            enforce_parameter_schema=True,
            print_next_steps=False,
            ignore_warnings=True,
        )
        print(f"{f.name}/{name} {dep_id} (pool {target_pool})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
