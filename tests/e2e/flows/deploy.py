"""Register the demo deployments (see demo_flow.py) with the Prefect server at PREFECT_API_URL.

Usage: python deploy.py WORK_POOL_NAME

Idempotent: deploying again updates the deployments in place. Each deployment enforces its
parameter schema, so a create with bad parameters is answered 409 by Prefect.
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


def main() -> int:
    pool = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PREFECT_POOL", "floodgate-demo")
    for entrypoint, name in DEPLOYMENTS:
        f = flow.from_source(source=str(HERE), entrypoint=entrypoint)
        dep_id = f.deploy(
            name=name,
            work_pool_name=pool,
            enforce_parameter_schema=True,
            print_next_steps=False,
            ignore_warnings=True,
        )
        print(f"{f.name}/{name} {dep_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
