"""floodgate: a Python client for the floodgate batch launcher of Prefect deployment runs.

Standard library only. The main entry points:

- :class:`FloodgateClient` — the REST API: submit, get, wait, runs, list, cancel, pause,
  resume, redrive, update.
- :func:`run_deployments` / :func:`arun_deployments` — a drop-in for a fan-out of Prefect's
  ``run_deployment`` inside a parent flow.
- the ``floodgate`` command line (``python -m floodgate``).
"""

from ._version import __version__
from .client import DEFAULT_URL, UNSET, FloodgateClient, json_default
from .errors import (
    BatchCancelledError,
    BatchError,
    BatchFailedError,
    BatchTimeoutError,
    FloodgateConnectionError,
    FloodgateError,
)
from .flows import arun_deployments, current_flow_run_id, run_deployments
from .models import (
    BATCH_FINAL_STATES,
    BATCH_STATES,
    ITEM_FAILURE_STATES,
    ITEM_FINAL_STATES,
    ITEM_STATES,
    Batch,
    Run,
)

__all__ = [
    "__version__",
    "DEFAULT_URL",
    "UNSET",
    "FloodgateClient",
    "json_default",
    "Batch",
    "Run",
    "BATCH_STATES",
    "BATCH_FINAL_STATES",
    "ITEM_STATES",
    "ITEM_FINAL_STATES",
    "ITEM_FAILURE_STATES",
    "FloodgateError",
    "FloodgateConnectionError",
    "BatchError",
    "BatchFailedError",
    "BatchCancelledError",
    "BatchTimeoutError",
    "run_deployments",
    "arun_deployments",
    "current_flow_run_id",
]
