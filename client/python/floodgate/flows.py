"""Helpers for Prefect parent flows: a drop-in for a fan-out of ``run_deployment``.

Instead of::

    await asyncio.gather(*(run_deployment(name, parameters=p) for p in parameters_list))

write::

    runs = floodgate.run_deployments(name, parameters_list)          # in a sync flow
    runs = await floodgate.arun_deployments(name, parameters_list)   # in an async flow

floodgate launches the children through its limits, retries without duplicating a run,
follows them with bulk reads, and the parent waits on a single long-poll. Prefect itself is
optional: it is only imported (lazily) to find the current flow run.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from .client import FloodgateClient
from .errors import BatchCancelledError, BatchFailedError, BatchTimeoutError
from .models import Batch, Run

__all__ = [
    "run_deployments",
    "arun_deployments",
    "current_flow_run_id",
    "format_failures",
    "MAX_FAILURES_SHOWN",
]

#: How many failed children an error message lists before it only counts the rest.
MAX_FAILURES_SHOWN = 20


def current_flow_run_id() -> Optional[str]:
    """The id of the Prefect flow run this code runs in, or ``None`` outside a flow run
    (or when Prefect is not installed)."""
    try:
        from prefect.runtime import flow_run  # type: ignore[import-not-found,unused-ignore]
    except Exception:  # Prefect is optional; any import problem means "not in a flow"
        return None
    try:
        value = flow_run.id
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def format_failures(batch: Batch, failed: Sequence[Run], limit: int = MAX_FAILURES_SHOWN) -> str:
    """A human summary of a failed batch listing at most ``limit`` failed children."""
    lines = [
        f"floodgate batch {batch.id} {batch.state}: {batch.failed} of {batch.total} "
        f"children failed ({_count_summary(batch)})"
    ]
    for run in failed[:limit]:
        parts = [f"  [{run.index}] {run.state}"]
        if run.flow_run_state and run.flow_run_state.upper() != run.state:
            parts.append(f"({run.flow_run_state})")
        parts.append(f"flow_run_id={run.flow_run_id or '-'}")
        if run.last_error:
            parts.append(f"error: {_one_line(run.last_error)}")
        lines.append(" ".join(parts))
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more failed children")
    return "\n".join(lines)


def _count_summary(batch: Batch) -> str:
    return ", ".join(f"{n} {state}" for state, n in batch.counts.items() if n)


def _one_line(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def _all_runs(client: FloodgateClient, batch_id: str) -> List[Run]:
    return sorted(client.runs(batch_id, page_size=1000), key=lambda r: r.index)


def run_deployments(
    name: str,
    parameters_list: Optional[Iterable[Mapping[str, Any]]] = None,
    *,
    runs: Optional[Iterable[Mapping[str, Any]]] = None,
    timeout: Optional[float] = None,
    as_subflow: bool = True,
    tags: Optional[Iterable[str]] = None,
    limits: Optional[Mapping[str, Any]] = None,
    tolerated_failure_percentage: Optional[float] = None,
    client: Optional[FloodgateClient] = None,
    poll_s: float = 30.0,
    **batch_options: Any,
) -> List[Run]:
    """Run a deployment once per parameter set through floodgate and wait for the children.

    A drop-in for ``asyncio.gather(*(run_deployment(name, parameters=p) for p in
    parameters_list))`` that submits one batch to floodgate.

    Args:
        name: The deployment, ``"flow-name/deployment-name"`` or a deployment id.
        parameters_list: One parameters dict per child run.
        runs: Instead of ``parameters_list``, full run specs (``parameters``, ``name``,
            ``tags``, ``job_variables``, ``work_queue_name``, ``idempotency_key``,
            ``deployment``).
        timeout: Seconds to wait; ``None`` waits until the batch ends; ``0`` returns right
            after submission with the runs as they are then (like ``run_deployment(...,
            timeout=0)``).
        as_subflow: Inside a Prefect flow run, link the children under it (the Prefect UI shows
            the tree), as ``run_deployment(as_subflow=True)`` does.
        tags: Tags added to every child.
        limits: ``max_in_flight``, ``max_running``, ``launches_per_second``, ``burst``,
            ``max_backlog``.
        tolerated_failure_percentage: Failures (in %) tolerated before the batch fails.
        client: The client to use; by default one built from ``FLOODGATE_URL``.
        poll_s: The longest single long-poll while waiting.
        **batch_options: Any other :meth:`FloodgateClient.submit` option: ``retry``,
            ``track``, ``relaunch_crashed``, ``tolerated_failure_count``, ``on_cancel``,
            ``start_deadline_s``, ``run_deadline_s``, ``on_deadline``, ``priority``,
            ``labels``, ``idempotency_key``, ``parent_flow_run_id``.

    Returns:
        The batch's runs in index order (the order of ``parameters_list``). Each
        :class:`~floodgate.Run` carries the child's ``flow_run_id`` and state.

    Raises:
        BatchFailedError: The batch ended FAILED; the message lists the failed children, and
            the exception carries ``.batch``, ``.runs`` and ``.failed_runs``.
        BatchCancelledError: The batch was cancelled.
        BatchTimeoutError: (a :class:`TimeoutError`) ``timeout`` passed first; the batch keeps
            running in floodgate.
        FloodgateError: floodgate refused the batch (e.g. a bad field) or could not be reached.
    """
    parent = batch_options.pop("parent_flow_run_id", None)
    if parent is None and as_subflow:
        parent = current_flow_run_id()
    return _run_deployments(name, parameters_list, runs=runs, timeout=timeout, parent=parent,
                            tags=tags, limits=limits,
                            tolerated_failure_percentage=tolerated_failure_percentage,
                            client=client, poll_s=poll_s, batch_options=batch_options)


async def arun_deployments(
    name: str,
    parameters_list: Optional[Iterable[Mapping[str, Any]]] = None,
    *,
    runs: Optional[Iterable[Mapping[str, Any]]] = None,
    timeout: Optional[float] = None,
    as_subflow: bool = True,
    tags: Optional[Iterable[str]] = None,
    limits: Optional[Mapping[str, Any]] = None,
    tolerated_failure_percentage: Optional[float] = None,
    client: Optional[FloodgateClient] = None,
    poll_s: float = 30.0,
    **batch_options: Any,
) -> List[Run]:
    """The ``async`` form of :func:`run_deployments`, for async flows.

    The parent flow run is looked up in the calling task; the blocking submit and wait run in a
    worker thread (:func:`asyncio.to_thread`), so the event loop stays free.
    """
    parent = batch_options.pop("parent_flow_run_id", None)
    if parent is None and as_subflow:
        parent = current_flow_run_id()
    materialized_params = list(parameters_list) if parameters_list is not None else None
    materialized_runs = list(runs) if runs is not None else None
    return await asyncio.to_thread(
        _run_deployments, name, materialized_params, runs=materialized_runs, timeout=timeout,
        parent=parent, tags=tags, limits=limits,
        tolerated_failure_percentage=tolerated_failure_percentage, client=client,
        poll_s=poll_s, batch_options=batch_options,
    )


def _run_deployments(
    name: str,
    parameters_list: Optional[Iterable[Mapping[str, Any]]],
    *,
    runs: Optional[Iterable[Mapping[str, Any]]],
    timeout: Optional[float],
    parent: Optional[str],
    tags: Optional[Iterable[str]],
    limits: Optional[Mapping[str, Any]],
    tolerated_failure_percentage: Optional[float],
    client: Optional[FloodgateClient],
    poll_s: float,
    batch_options: Mapping[str, Any],
) -> List[Run]:
    if (parameters_list is None) == (runs is None):
        raise TypeError("run_deployments needs exactly one of parameters_list and runs")
    if runs is not None:
        specs = [dict(r) for r in runs]
    else:
        assert parameters_list is not None
        specs = [{"parameters": dict(p)} for p in parameters_list]
    if not specs:
        return []
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must not be negative")
    client = client or FloodgateClient()
    batch = client.submit(
        name, specs, tags=tags, limits=limits,
        tolerated_failure_percentage=tolerated_failure_percentage,
        parent_flow_run_id=parent, **batch_options,
    )
    if timeout == 0:
        return _all_runs(client, batch.id)
    try:
        batch = client.wait(batch.id, timeout=timeout, poll_s=poll_s, raise_on_timeout=True)
    except BatchTimeoutError as e:
        raise BatchTimeoutError(
            f"floodgate batch {e.batch.id} did not finish within {timeout:g} s "
            f"({e.batch.state}, {e.batch.done}/{e.batch.total} done, {e.batch.failed} failed); "
            f"it keeps running: `floodgate watch {e.batch.id}`",
            e.batch,
        ) from None
    all_runs = _all_runs(client, batch.id)
    if batch.state == "FAILED":
        failed = [r for r in all_runs if r.failed]
        raise BatchFailedError(format_failures(batch, failed), batch, all_runs, failed)
    if batch.state == "CANCELLED":
        raise BatchCancelledError(
            f"floodgate batch {batch.id} was CANCELLED ({_count_summary(batch)})",
            batch, all_runs,
        )
    return all_runs
